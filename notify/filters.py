import django_filters

from core.filters import IdFilter
from core.input import IsoDateTimeFilter
from notify.models import Channel, Notification, NotificationStatus, Priority


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
