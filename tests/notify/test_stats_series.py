"""The per-minute delivery series of GET /api/v1/notifications/stats/: `last_hour`."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notify.models import Notification
from notify.selectors import notification_stats

pytestmark = pytest.mark.django_db

STATS_URL = "/api/v1/notifications/stats/"

NOW = datetime(2026, 11, 25, 10, 30, 42, 123456, tzinfo=UTC)
CURRENT_MINUTE = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
OLDEST_MINUTE = CURRENT_MINUTE - timedelta(minutes=59)


def _notification(*, channel="email", status="sent", sent_at=None, sender=None):
    notification = Notification.objects.create(
        channel=channel,
        recipient="someone@example.com" if channel == "email" else "123456789",
        title="Hello",
        message="Body",
        status=status,
        sender=sender,
    )
    if sent_at is not None:
        Notification.objects.filter(pk=notification.pk).update(sent_at=sent_at)
    return notification


def _series(now=NOW):
    return notification_stats(queryset=Notification.objects.all(), now=now)["last_hour"]


def _by_minute(series):
    return {datetime.fromisoformat(bucket["minute"]): (bucket["email"], bucket["telegram"]) for bucket in series}


def test_sixty_empty_minutes_oldest_first_ending_with_the_current_one():
    series = _series()

    assert len(series) == 60
    minutes = [datetime.fromisoformat(bucket["minute"]) for bucket in series]
    assert minutes[0] == OLDEST_MINUTE
    assert minutes[-1] == CURRENT_MINUTE
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in zip(minutes, minutes[1:], strict=False))
    assert all(minute.utcoffset() == timedelta(0) for minute in minutes)
    assert all(set(bucket) == {"minute", "email", "telegram", "in_app"} for bucket in series)
    assert all(bucket["email"] == bucket["telegram"] == bucket["in_app"] == 0 for bucket in series)


def test_counts_sent_notifications_by_minute_and_channel():
    _notification(channel="email", sent_at=CURRENT_MINUTE + timedelta(seconds=5))
    _notification(channel="email", sent_at=CURRENT_MINUTE + timedelta(seconds=41))
    _notification(channel="telegram", sent_at=CURRENT_MINUTE)
    _notification(channel="telegram", sent_at=CURRENT_MINUTE - timedelta(minutes=10) + timedelta(seconds=59))
    _notification(channel="email", sent_at=OLDEST_MINUTE)

    counts = _by_minute(_series())

    assert counts[CURRENT_MINUTE] == (2, 1)
    assert counts[CURRENT_MINUTE - timedelta(minutes=10)] == (0, 1)
    assert counts[OLDEST_MINUTE] == (1, 0)
    assert sum(email + telegram for email, telegram in counts.values()) == 5


def test_leaves_out_what_was_sent_outside_the_hour_or_not_sent():
    _notification(sent_at=OLDEST_MINUTE - timedelta(microseconds=1))
    _notification(sent_at=CURRENT_MINUTE + timedelta(minutes=1))
    _notification(status="failed")
    _notification(status="pending")

    assert all(bucket["email"] == bucket["telegram"] == 0 for bucket in _series())


def test_one_grouped_query_however_many_minutes_have_deliveries():
    _notification(sent_at=CURRENT_MINUTE)
    with CaptureQueriesContext(connection) as one_minute:
        _series()
    for minutes_ago in range(1, 40):
        _notification(channel="telegram", sent_at=CURRENT_MINUTE - timedelta(minutes=minutes_ago))
    with CaptureQueriesContext(connection) as many_minutes:
        series = _series()

    assert len(many_minutes) == len(one_minute)
    assert sum(bucket["telegram"] for bucket in series) == 39


def test_api_ends_with_the_current_minute(staff_client):
    _notification(channel="telegram", sent_at=timezone.now())

    series = staff_client.get(STATS_URL).json()["last_hour"]

    assert len(series) == 60
    last = datetime.fromisoformat(series[-1]["minute"])
    assert timezone.now() - last < timedelta(minutes=2)
    assert sum(bucket["telegram"] for bucket in series) == 1
    assert sum(bucket["email"] for bucket in series) == 0


def test_api_counts_only_what_the_user_may_see(user, other_user, user_client, staff_client):
    sent_at = timezone.now() - timedelta(minutes=5)
    _notification(channel="email", sent_at=sent_at, sender=user)
    _notification(channel="telegram", sent_at=sent_at, sender=other_user)

    mine = user_client.get(STATS_URL).json()["last_hour"]
    everything = staff_client.get(STATS_URL).json()["last_hour"]

    assert (sum(b["email"] for b in mine), sum(b["telegram"] for b in mine)) == (1, 0)
    assert (sum(b["email"] for b in everything), sum(b["telegram"] for b in everything)) == (1, 1)


def test_api_applies_the_list_filters(staff_client):
    sent_at = timezone.now() - timedelta(minutes=1)
    _notification(channel="email", sent_at=sent_at)
    _notification(channel="telegram", sent_at=sent_at)

    series = staff_client.get(STATS_URL, {"channel": "telegram"}).json()["last_hour"]

    assert sum(b["telegram"] for b in series) == 1
    assert sum(b["email"] for b in series) == 0
