from datetime import UTC, timedelta
from statistics import median, quantiles

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from notify.models import Channel, Inbox, InboxMessage, Notification, NotificationStatus, Priority
from orders.models import Customer, Order
from orders.selectors import customer_list, customer_viewer_ids, order_list, order_viewer_ids


def notification_list(*, user):
    """Staff: all. A user: what they sent, and what concerns the orders and customers they see."""
    notifications = Notification.objects.all()
    if user.is_staff:
        return notifications
    return notifications.filter(
        Q(sender=user) | Q(order__in=order_list(user=user)) | Q(customer__in=customer_list(user=user))
    )


def accounts_active_named(usernames):
    """{username: user} of the active accounts among `usernames`: who an in_app notification may go to."""
    User = get_user_model()
    found = User.objects.filter(is_active=True, **{f"{User.USERNAME_FIELD}__in": usernames})
    return {user.get_username(): user for user in found}


def inbox_message_list(*, user):
    """The user's own inbox: no one sees another's, staff included."""
    return InboxMessage.objects.filter(user=user)


def inbox_counts(*, user):
    """{"unseen": n, "unread": n} of the user's inbox, archived messages aside."""
    inbox = Inbox.objects.filter(user=user).first()
    return inbox.counts() if inbox is not None else Inbox(user=user).counts()


def _related(rows, field, model, **lookup):
    """{pk: instance} of the `field` foreign keys of `rows`: those already
    loaded on them as they are, the rest in one query."""
    if not rows:
        return {}
    descriptor = getattr(type(rows[0]), field)
    loaded = [getattr(row, field) for row in rows if descriptor.is_cached(row)]
    found = {instance.pk: instance for instance in loaded if instance is not None}
    missing = {getattr(row, f"{field}_id") for row in rows} - set(found) - {None}
    if missing:
        found.update(model.objects.filter(**lookup).in_bulk(missing))
    return found


def notification_viewer_ids(notifications):
    """The other side of notification_list: {notification pk: ids of the
    users, staff aside, who may see it}. Orders and customers already loaded on
    the rows (as when they were just written) cost no query."""
    notifications = list(notifications)
    orders = _related(notifications, "order", Order)
    customers = _related(notifications, "customer", Customer)
    customers.update(_related(list(orders.values()), "customer", Customer))
    by_customer = customer_viewer_ids(customers.values())  # once for the orders' customers too
    by_order = order_viewer_ids(orders.values(), by_customer)
    return {
        n.pk: ({n.sender_id} - {None}) | by_order.get(n.order_id, set()) | by_customer.get(n.customer_id, set())
        for n in notifications
    }


def _counts(queryset, field, choices):
    counts = dict.fromkeys(choices.values, 0)
    counts.update({row[field]: row["n"] for row in queryset.values(field).annotate(n=Count("id")).order_by()})
    return counts


def _latency(seconds):
    if not seconds:
        return {"median": None, "p95": None}
    p95 = quantiles(seconds, n=20, method="inclusive")[-1] if len(seconds) > 1 else seconds[0]
    return {"median": round(median(seconds), 3), "p95": round(p95, 3)}


def _stats(queryset):
    by_status = _counts(queryset, "status", NotificationStatus)
    finished = by_status[NotificationStatus.SENT] + by_status[NotificationStatus.FAILED]
    latencies = [
        (sent_at - created_at).total_seconds()
        for created_at, sent_at in queryset.filter(status=NotificationStatus.SENT)
        .values_list("created_at", "sent_at")
        .iterator()
    ]
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_channel": _counts(queryset, "channel", Channel),
        "by_priority": _counts(queryset, "priority", Priority),
        "success_rate": round(by_status[NotificationStatus.SENT] / finished, 4) if finished else None,
        "latency_seconds": _latency(latencies),
    }


LAST_HOUR_MINUTES = 60


def _last_hour(queryset, now):
    """Sent notifications per minute and channel by `sent_at`: the 60 minutes up to and
    including the current one, oldest first, in one grouped query."""
    end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=LAST_HOUR_MINUTES)
    rows = (
        queryset.filter(sent_at__gte=start, sent_at__lt=end)
        .annotate(minute=TruncMinute("sent_at", tzinfo=UTC))
        .values("minute", "channel")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {(row["minute"], row["channel"]): row["n"] for row in rows}
    buckets = []
    for i in range(LAST_HOUR_MINUTES):
        minute = start + timedelta(minutes=i)
        bucket = {"minute": minute.isoformat()}
        bucket.update({channel: counts.get((minute, channel), 0) for channel in Channel.values})
        buckets.append(bucket)
    return buckets


def notification_stats(*, queryset, now=None):
    """Counts by status, channel and priority, success rate and creation-to-sent latency,
    overall and for the last 24 hours; and deliveries per minute over the last hour."""
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    return {
        "overall": _stats(queryset),
        "last_24h": _stats(queryset.filter(created_at__gte=since)),
        "last_hour": _last_hour(queryset, now),
    }
