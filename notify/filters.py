import django_filters

from core.filters import BooleanFilter, IdFilter
from core.input import IsoDateTimeFilter
from notify.models import Channel, InboxMessage, Notification, NotificationStatus, Priority


class NotificationFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=NotificationStatus.choices)
    channel = django_filters.MultipleChoiceFilter(choices=Channel.choices)
    priority = django_filters.MultipleChoiceFilter(choices=Priority.choices)
    order = IdFilter(field_name="order_id")
    customer = IdFilter(field_name="customer_id")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Notification
        fields = ["status", "channel", "priority", "order", "customer", "created_after", "created_before"]


class InboxFilter(django_filters.FilterSet):
    unread = BooleanFilter(
        field_name="read_at", lookup_expr="isnull", help_text="true: unread messages only; false: read ones only."
    )
    archived = BooleanFilter(
        field_name="archived_at",
        lookup_expr="isnull",
        exclude=True,
        help_text="true: the archive; false, the default: the inbox, archived messages aside.",
    )

    class Meta:
        model = InboxMessage
        fields = ["unread", "archived"]
