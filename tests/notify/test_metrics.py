"""What delivery counts for /metrics: final statuses, retries and the latency of
sent notifications, by channel, in the store of the mode the environment gives."""

import json

import pytest

from core import metrics
from notify import services
from notify.models import Notification

pytestmark = pytest.mark.django_db

FINISHED, RETRIES, LATENCY = (
    "hub_notifications_finished",
    "hub_notification_retries",
    "hub_notification_delivery_seconds",
)


def _send(sender, channel="email", recipient="ann@example.com"):
    notification, _ = services.notification_send(
        sender=sender, channel=channel, recipient=recipient, title="Hi", message="Hello"
    )
    return notification


def _counted(series, *names):
    return {key: value for key, value in series.items() if key[0] in names}


def test_metrics_count_each_delivery_outcome_by_channel(
    user, smtp_sink, telegram_api, metrics_store, django_capture_on_commit_callbacks
):
    telegram_api.script.extend([(500, "Internal Server Error"), (400, "Bad Request: chat not found")])
    mail = _send(user)
    retried = _send(user, channel="telegram", recipient="41")
    refused = _send(user, channel="telegram", recipient="42")

    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_deliver(notification_ids=[mail.pk, retried.pk, refused.pk])

    series = metrics.snapshot().series
    assert _counted(series, FINISHED, RETRIES) == {
        (FINISHED, "email", "sent"): 1,
        (FINISHED, "telegram", "failed"): 1,
        (RETRIES, "telegram"): 1,
    }
    mail.refresh_from_db()
    assert series[(f"{LATENCY}_count", "email")] == 1
    assert series[(f"{LATENCY}_sum", "email")] == pytest.approx((mail.sent_at - mail.created_at).total_seconds())
    assert (f"{LATENCY}_count", "telegram") not in series


def test_metrics_count_a_notification_sent_once_though_its_message_came_twice(
    user, smtp_sink, metrics_store, django_capture_on_commit_callbacks
):
    mail = _send(user)

    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_deliver(notification_ids=[mail.pk])
        services.notifications_deliver(notification_ids=[mail.pk])

    assert _counted(metrics.snapshot().series, FINISHED, f"{LATENCY}_count") == {
        (FINISHED, "email", "sent"): 1,
        (f"{LATENCY}_count", "email"): 1,
    }


@pytest.mark.django_db(transaction=True)
def test_metrics_of_a_recorded_batch_reach_the_store_in_one_write(user, smtp_sink, metrics_store, monkeypatch):
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(3)]
    flushes = []
    flush = metrics._flush
    monkeypatch.setattr(metrics, "_flush", lambda changes: (flushes.append(dict(changes)), flush(changes)))

    services.notifications_deliver(notification_ids=ids)

    assert Notification.objects.filter(status="sent").count() == 3
    (changes,) = [c for c in flushes if c]  # the notifications and their events together
    counted = {tuple(json.loads(field)): amount for field, amount in changes.items()}
    assert counted[(FINISHED, "email", "sent")] == 3
    assert counted[(f"{LATENCY}_count", "email")] == 3
    assert counted[("hub_events_published", "notification.status_changed")] == 3
