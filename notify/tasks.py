"""Dramatiq actors. They take a batch of ids, re-read the rows, and are safe to run twice."""

import dramatiq

from core.logs import request_id_bound
from notify.models import URGENT_PRIORITIES

# Retries are the ledger's business (notify.services): no Retries middleware.
_OPTIONS = {"time_limit": 120_000}


def deliver_notifications(notification_ids, request_id=None):
    """`request_id`: the request that wrote the rows (None from the sweeper);
    the batch's log lines carry it."""
    from notify.services import notifications_deliver

    with request_id_bound(request_id):
        notifications_deliver(notification_ids=notification_ids)


# Urgent and high priority have a queue of their own, so a bulk send of
# thousands does not hold them up, and workers take them first.
deliver_notifications_urgent = dramatiq.actor(
    deliver_notifications, actor_name="deliver_notifications_urgent", queue_name="notify_urgent", priority=0, **_OPTIONS
)
deliver_notifications_default = dramatiq.actor(
    deliver_notifications, actor_name="deliver_notifications", queue_name="notify", priority=10, **_OPTIONS
)
NOTIFY_QUEUES = ["notify_urgent", "notify"]


def deliver_actor_for(priority):
    return deliver_notifications_urgent if priority in URGENT_PRIORITIES else deliver_notifications_default
