"""Dramatiq actors. They take ids, re-read the row, and are safe to run twice."""

import dramatiq

from notify.models import URGENT_PRIORITIES

# Retries are the ledger's business (notify.services): no Retries middleware.
_OPTIONS = {"time_limit": 120_000}


def deliver_notification(notification_id):
    from notify.services import notification_deliver

    notification_deliver(notification_id=notification_id)


# Urgent and high priority have a queue of their own, so a bulk send of
# thousands does not hold them up, and workers take them first.
deliver_notification_urgent = dramatiq.actor(
    deliver_notification, actor_name="deliver_notification_urgent", queue_name="notify_urgent", priority=0, **_OPTIONS
)
deliver_notification_default = dramatiq.actor(
    deliver_notification, actor_name="deliver_notification", queue_name="notify", priority=10, **_OPTIONS
)
NOTIFY_QUEUES = ["notify_urgent", "notify"]


def deliver_actor_for(priority):
    return deliver_notification_urgent if priority in URGENT_PRIORITIES else deliver_notification_default
