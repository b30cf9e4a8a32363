"""The Redis calls a request can do without: skipped for a while after a
failure, never raised; throttles let requests through and broker messages
are left to the sweeper."""

import logging
import time

import pytest
import redis

from core import redis as core_redis
from core.throttles import ScopedThrottle
from notify import services as notify_services
from notify.models import Notification, NotificationStatus
from tests.helpers import SEED_SEND


class Flaky:
    """A call that fails while `down`, counting its calls."""

    def __init__(self):
        self.down, self.calls = True, 0

    def __call__(self, value):
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return value


def test_an_optional_call_that_fails_is_skipped_for_a_while_then_tried_again(settings, caplog):
    settings.REDIS_RETRY_SECONDS = 0.2
    call = Flaky()

    with caplog.at_level(logging.WARNING, logger="core.redis"):
        assert core_redis.redis_optional("counting", call, 1, default="none") == "none"
        assert core_redis.redis_optional("counting", call, 2, default="none") == "none"
        assert call.calls == 1  # the second was not tried
        time.sleep(0.25)
        call.down = False
        assert core_redis.redis_optional("counting", call, 3, default="none") == 3

    assert call.calls == 2
    (line,) = caplog.records  # one line for the outage
    assert line.getMessage().startswith("Redis unavailable (counting: Error 111")


def test_an_error_that_is_not_redis_s_is_raised():
    def broken():
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        core_redis.redis_optional("counting", broken)


@pytest.fixture
def throttle_cache_down(monkeypatch):
    class Down:
        def get(self, *args, **kwargs):
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

        set = get

    monkeypatch.setattr(ScopedThrottle, "cache", Down())


def test_a_throttle_that_cannot_count_lets_the_request_through(user_client, throttle_cache_down):
    r = user_client.post("/api/v1/notifications/send/", SEED_SEND)

    assert r.status_code == 202, r.content
    assert Notification.objects.filter(pk=r.json()["id"]).exists()


def test_an_enqueue_while_redis_is_down_leaves_the_rows_queued_for_the_sweeper(user, monkeypatch):
    notification, _ = notify_services.notification_send(
        sender=user, channel="email", recipient="ann@example.com", title="Hi", message="Hello"
    )
    sent = Flaky()
    monkeypatch.setattr(notify_services, "_broker_messages", lambda ids, **kwargs: sent(ids))

    notify_services.notifications_enqueue([(notification.pk, notification.priority)])

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.QUEUED  # the sweeper sends it again once stale
    assert sent.calls == 1
