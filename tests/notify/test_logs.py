"""Delivery's log lines: one per attempt, under the id of the request that
caused it, carried from the request through the broker to the worker."""

import json
import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from dramatiq import get_broker
from dramatiq.brokers.stub import StubBroker

from core.logs import RedactSecretsFilter, json_formatter, request_id_bound, request_id_current
from notify import services
from notify.channels import Outbox
from notify.models import Notification
from notify.tasks import deliver_notifications
from tests.conftest import TELEGRAM_TEST_TOKEN

pytestmark = pytest.mark.django_db


def _send(sender, channel="email", recipient="ann@example.com", **extra):
    fields = {"channel": channel, "recipient": recipient, "title": "Hi", "message": "Hello", **extra}
    notification, _ = services.notification_send(sender=sender, **fields)
    return notification


def _messages(queue):
    """The messages waiting on a queue (in memory, or Redis in CI), decoded."""
    broker = get_broker()
    if isinstance(broker, StubBroker):
        encoded = list(broker.queues[queue].queue) if queue in broker.queues else []
    else:
        ids = broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)
        encoded = broker.client.hmget(f"{broker.namespace}:{queue}.msgs", ids) if ids else []
    return [json.loads(message) for message in encoded]


def _attempt_lines(caplog):
    return [r for r in caplog.records if r.name == "hub.delivery"]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


def test_deliver_logs_a_line_per_attempt_without_recipient_or_message(user, smtp_sink, caplog):
    notification = _send(user, recipient="ann.private@example.com", message="Body only Ann reads")

    services.notifications_deliver(notification_ids=[notification.pk])

    (line,) = _attempt_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"Notification {notification.pk} (email) attempt 1: sent"
    fields = (line.notification_id, line.channel, line.attempt, line.outcome, line.error)
    assert fields == (notification.pk, "email", 1, "sent", None)
    assert isinstance(line.duration_ms, float) and line.duration_ms >= 0
    formatted = json_formatter().format(line)
    assert "ann.private" not in formatted and "Body only Ann reads" not in formatted


def test_deliver_logs_each_attempt_of_a_batch(user, smtp_sink, caplog):
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(3)]

    services.notifications_deliver(notification_ids=ids)

    assert sorted(line.notification_id for line in _attempt_lines(caplog)) == ids


def test_deliver_logs_a_retry_with_its_error_and_delay(user, smtp_sink, settings, caplog):
    settings.NOTIFY_RETRY_BASE_SECONDS = 10
    smtp_sink.reply_rcpt = "451 try again later"
    notification = _send(user)

    services.notifications_deliver(notification_ids=[notification.pk])

    (line,) = _attempt_lines(caplog)
    assert line.levelno == logging.WARNING
    assert (line.outcome, line.attempt) == ("retry", 1)
    assert "451" in line.error
    assert 5 <= line.retry_in_s <= 10  # half to all of the base delay


def test_deliver_logs_a_failure_with_the_reason_and_not_the_bot_token(user, telegram_api, caplog):
    telegram_api.script.append((400, "Bad Request: chat not found"))
    notification = _send(user, channel="telegram", recipient="42")

    services.notifications_deliver(notification_ids=[notification.pk])

    (line,) = _attempt_lines(caplog)
    assert (line.outcome, line.channel, line.levelno) == ("failed", "telegram", logging.WARNING)
    assert "chat not found" in line.error
    assert not hasattr(line, "retry_in_s")
    assert TELEGRAM_TEST_TOKEN not in json_formatter().format(line)


def test_deliver_keeps_the_bot_token_out_of_the_logs_of_an_unexpected_error(user, telegram_api, caplog, monkeypatch):
    caplog.handler.addFilter(RedactSecretsFilter())  # as the console handler has it

    def broken(outbox, notification):
        raise RuntimeError(f"POST {settings.TELEGRAM_API_URL}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage failed")

    monkeypatch.setattr(Outbox, "send", broken)
    notification = _send(user, channel="telegram", recipient="42")

    services.notifications_deliver(notification_ids=[notification.pk])

    output = "\n".join(json_formatter().format(record) for record in caplog.records)
    assert TELEGRAM_TEST_TOKEN not in output
    assert "RuntimeError" in output  # the traceback is there, redacted
    (line,) = _attempt_lines(caplog)
    assert line.outcome == "retry" and "/bot[redacted]/sendMessage" in line.error
    notification.refresh_from_db()  # the API shows these: the token stays out of them too
    assert "/bot[redacted]/sendMessage" in notification.last_error
    assert TELEGRAM_TEST_TOKEN not in notification.last_error + notification.attempt_log.get().error


# ---- the request id, from the request to the worker ---------------------------------------------


def test_enqueue_carries_the_request_id_of_the_request_that_wrote_the_rows(
    user_client, django_capture_on_commit_callbacks
):
    body = {"title": "T", "message": "M", "recipient_type": "email", "recipient": "ann@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post("/api/v1/notifications/send/", body, HTTP_X_REQUEST_ID="req-send-1")

    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == "req-send-1"
    (message,) = _messages("notify")
    assert message["args"] == [[response.json()["id"]]]
    assert message["kwargs"] == {"request_id": "req-send-1"}


def test_sweeper_enqueues_with_no_request_id(user, settings):
    settings.NOTIFY_STALE_AFTER_SECONDS = 60
    with request_id_bound("req-that-lost-its-enqueue"):
        lost = _send(user)  # not inside on_commit capture: its enqueue never runs
    Notification.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=120))

    assert services.notifications_sweep() == 1

    (message,) = _messages("notify")
    assert message["kwargs"] == {"request_id": None}


def test_deliver_retry_keeps_the_request_id_of_its_message(user, smtp_sink, django_capture_on_commit_callbacks):
    smtp_sink.reply_rcpt = "451 try again later"
    notification = _send(user)

    with request_id_bound("req-first-try"), django_capture_on_commit_callbacks(execute=True):
        services.notifications_deliver(notification_ids=[notification.pk])

    (message,) = _messages("notify.DQ")
    assert message["kwargs"] == {"request_id": "req-first-try"}


def test_deliver_actor_logs_under_the_request_id_its_message_carries(user, smtp_sink, caplog):
    notification = _send(user)

    deliver_notifications([notification.pk], request_id="req-actor")

    (line,) = _attempt_lines(caplog)
    assert line.request_id == "req-actor"
    assert request_id_current() is None  # the worker thread's next message starts clean


def test_deliver_actor_without_a_request_id_logs_none(user, smtp_sink, caplog):
    notification = _send(user)

    with request_id_bound("req-of-an-earlier-message"):
        deliver_notifications([notification.pk])

    (line,) = _attempt_lines(caplog)
    assert line.request_id is None
