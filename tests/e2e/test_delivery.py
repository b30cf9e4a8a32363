"""Delivery in services mode with real parts: Daphne and `rundramatiq` processes
on real PostgreSQL and Redis, mail to a real SMTP server, Telegram to a Bot API
stand-in on loopback."""

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from notify.models import FINAL_STATUSES, Notification, NotificationStatus
from tests.conftest import TELEGRAM_TEST_TOKEN
from tests.e2e.conftest import api_client, token_for, wait_until
from tests.factories import PASSWORD, StaffFactory, UserFactory
from tests.fakes import free_port
from tests.helpers import SEED_ORDER

pytestmark = pytest.mark.e2e


def _api(hub, user):
    return api_client(hub.url, token_for(hub.url, user))


def _all_final(count):
    def check():
        rows = list(Notification.objects.values_list("status", flat=True))
        return len(rows) == count and all(status in FINAL_STATUSES for status in rows)

    return check


def test_order_notifications_reach_mail_and_telegram(services_hub):
    user = UserFactory(first_name="Ann", last_name="Lee", password=PASSWORD)
    api = _api(services_hub, user)
    r = api.post("/customers/", json={"name": "Ann Lee", "email": user.email, "telegram_chat_id": "4242"})
    assert r.status_code == 201, r.text

    r = api.post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    wait_until(_all_final(3), what="the order's notifications delivered")

    channels = {("email", "sent"), ("telegram", "sent"), ("in_app", "sent")}
    assert set(Notification.objects.values_list("channel", "status")) == channels
    (mail,) = services_hub.sink.messages
    assert mail["to"] == [user.email]
    assert mail["message"]["Subject"] == "Order ORD-001 received"
    assert "Hello Ann Lee," in mail["message"].get_body(("plain",)).get_content()
    assert "<strong>ORD-001</strong>" in mail["message"].get_body(("html",)).get_content()
    (request,) = services_hub.telegram.requests
    assert request["json"]["chat_id"] == "4242"
    assert request["json"]["text"].startswith("<b>Order ORD-001 received</b>\nOrder ORD-001 received: 149.99 INR.")

    staff_api = _api(services_hub, StaffFactory(password=PASSWORD))
    assert staff_api.put(f"/orders/{r.json()['id']}/status/", json={"status": "confirmed"}).status_code == 200
    wait_until(_all_final(6), what="the status change's notifications delivered")
    assert services_hub.sink.messages[-1]["message"]["Subject"] == "Order ORD-001 is confirmed"
    # The placer's account has both in its inbox, newest first.
    inbox = api.get("/inbox/").json()["results"]
    assert [m["title"] for m in inbox] == ["Order ORD-001 is confirmed", "Order ORD-001 received"]
    assert api.get("/inbox/counts/").json() == {"unseen": 2, "unread": 2}
    assert TELEGRAM_TEST_TOKEN not in services_hub.output("worker")


def test_each_error_class_ends_as_it_should(services_hub):
    telegram = services_hub.telegram
    telegram.script.extend([(429, 1), "ok", (500, "Internal Server Error"), (400, "Bad Request: chat not found")])
    services_hub.sink.reply_rcpt = None
    api = _api(services_hub, UserFactory(password=PASSWORD))

    def send(recipient_type, recipient):
        body = {"title": "T", "message": "M", "recipient_type": recipient_type, "recipient": recipient}
        r = api.post("/notifications/send/", json=body)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    # Sent one after another so each meets the scripted answers in order.
    rate_limited = send("telegram", "1001")
    wait_until(lambda: Notification.objects.get(pk=rate_limited).status == "sent", what="429 then sent")
    server_error = send("telegram", "1002")
    wait_until(lambda: Notification.objects.get(pk=server_error).status == "failed", what="500 then 400")

    first = Notification.objects.get(pk=rate_limited)
    assert [a.outcome for a in first.attempt_log.all()] == ["retry", "sent"]
    assert first.attempt_log.first().error.startswith("Telegram 429")
    gap = first.attempt_log.last().started_at - first.attempt_log.first().finished_at
    assert gap >= timedelta(seconds=0.9)  # Telegram's retry_after was 1 s
    second = Notification.objects.get(pk=server_error)
    assert [a.outcome for a in second.attempt_log.all()] == ["retry", "failed"]
    assert second.last_error == "Telegram 400: Bad Request: chat not found"

    services_hub.sink.reply_rcpt = "550 5.1.1 No such user"
    refused = send("email", "nobody@example.com")
    wait_until(lambda: Notification.objects.get(pk=refused).status == "failed", what="SMTP 550")
    assert "550" in Notification.objects.get(pk=refused).last_error
    assert Notification.objects.get(pk=refused).attempts == 1


def test_a_duplicate_message_sends_once(services_hub):
    from notify.tasks import deliver_notifications_default

    api = _api(services_hub, UserFactory(password=PASSWORD))
    r = api.post(
        "/notifications/send/",
        json={"title": "Once", "message": "M", "recipient_type": "email", "recipient": "x@example.com"},
    )
    pk = r.json()["id"]
    wait_until(lambda: Notification.objects.get(pk=pk).status == "sent", what="sent")

    for _ in range(3):  # redelivered copies of the same message
        deliver_notifications_default.send([pk])
    wait_until(lambda: services_hub.sink.messages and _queues_empty(), what="the copies consumed")

    assert len(services_hub.sink.messages) == 1
    assert Notification.objects.get(pk=pk).attempts == 1


def _queues_empty():
    from notify.heartbeat import queue_depths

    return not any(queue_depths().values())


def test_sweeper_delivers_a_notification_whose_enqueue_was_lost(services_hub):
    lost = Notification.objects.create(channel="email", recipient="lost@example.com", title="Lost", message="M")
    Notification.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    services_hub.start_sweeper(NOTIFY_SWEEP_INTERVAL_SECONDS="0.5", NOTIFY_STALE_AFTER_SECONDS="2")
    wait_until(lambda: Notification.objects.get(pk=lost.pk).status == "sent", what="the sweeper's re-enqueue")

    assert [m["to"] for m in services_hub.sink.messages] == [["lost@example.com"]]


def test_a_worker_killed_mid_batch_loses_nothing(services_hub):
    services_hub.sink.delay = 0.02  # a slow mail server, so the kill lands mid-batch
    api = _api(services_hub, UserFactory(password=PASSWORD))
    items = [
        {"title": f"N{i}", "message": "M", "recipient_type": "email", "recipient": f"u{i}@example.com"}
        for i in range(150)
    ]
    r = api.post("/notifications/bulk/", json={"notifications": items})
    assert r.status_code == 202, r.text
    wait_until(lambda: len(services_hub.sink.messages) >= 20, what="the batch under way")

    services_hub.stop("worker", signal.SIGKILL)
    in_flight = Notification.objects.exclude(status__in=FINAL_STATUSES).count()
    assert in_flight > 0, "the kill came too late to test anything"

    timeouts = {"NOTIFY_SENDING_TIMEOUT_SECONDS": "2", "NOTIFY_STALE_AFTER_SECONDS": "2"}
    services_hub.start_worker("worker2", **timeouts)
    services_hub.start_sweeper(NOTIFY_SWEEP_INTERVAL_SECONDS="0.5", **timeouts)
    wait_until(_all_final(150), timeout=60, what="every accepted notification to end")

    assert Notification.objects.filter(status="sent").count() == 150
    delivered = {m["to"][0] for m in services_hub.sink.messages}
    assert delivered == {f"u{i}@example.com" for i in range(150)}


# README, "On a developer's machine": a failure and a retry with no Telegram account.
NOWHERE = {
    "TELEGRAM_BOT_TOKEN": "demo",
    "TELEGRAM_API_URL": f"http://127.0.0.1:{free_port()}",
    "NOTIFY_MAX_RETRIES": "1",
    "NOTIFY_RETRY_BASE_SECONDS": "0.2",
}


@pytest.mark.parametrize("hub", [NOWHERE], indirect=True)
def test_the_readme_recipe_shows_a_failure_and_a_retry(hub):
    user = UserFactory()
    staff = StaffFactory()
    message = {"title": "Hi", "message": "Hello", "recipient_type": "telegram", "recipient": "42"}
    with api_client(hub.url, token_for(hub.url, user)) as api:
        response = api.post("/notifications/send/", json=message)
    assert response.status_code == 202, response.text
    pk = response.json()["id"]

    def ended_failed():
        return Notification.objects.get(pk=pk).status == NotificationStatus.FAILED

    wait_until(ended_failed, timeout=30, what="the notification to fail")
    with api_client(hub.url, token_for(hub.url, staff)) as api:
        assert api.post(f"/notifications/{pk}/retry/").status_code == 202
    wait_until(lambda: Notification.objects.get(pk=pk).attempts == 4 and ended_failed(), timeout=30, what="the retry")

    notification = Notification.objects.get(pk=pk)
    assert "Telegram unreachable" in notification.last_error
    assert list(notification.attempt_log.order_by("id").values_list("number", "outcome")) == [
        (1, "retry"),
        (2, "failed"),
        (3, "retry"),
        (4, "failed"),
    ]
