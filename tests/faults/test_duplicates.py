"""A second copy is rare and recognisable: a worker SIGKILLed mid-batch
repeats at most NOTIFY_RECORD_EVERY sends per thread, each with the Message-ID of
the first; a split Telegram message whose part 2 fails is resent from part 2."""

import os
import signal

import pytest
from django.conf import settings

from notify.models import Notification, NotificationStatus
from tests.e2e.conftest import api_client, token_for, wait_until
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.e2e

MAILS = 300
THREADS = 8  # the worker's (tests/e2e/conftest.py, Processes.start_worker)


def test_a_worker_killed_mid_batch_repeats_few_sends_each_recognisable(own_hub):
    # After the kill, what the dead worker left `sending` is taken over after 3 s.
    hub = own_hub(NOTIFY_SENDING_TIMEOUT_SECONDS="3", NOTIFY_STALE_AFTER_SECONDS="2")
    staff = StaffFactory()
    item = {"title": "Hi", "message": "Hello", "recipient_type": "email"}
    bulk = [{**item, "recipient": f"u{i}@example.com"} for i in range(MAILS)]
    with api_client(hub.url, token_for(hub.url, staff)) as api:
        assert api.post("/notifications/bulk/", json={"notifications": bulk}).status_code == 202

    wait_until(lambda: len(hub.sink.messages) >= MAILS // 3, timeout=60, what="a third of the mails")
    process, _ = hub.running["worker"]
    os.killpg(process.pid, signal.SIGKILL)
    hub.stop("worker")
    sent_before_the_kill = len(hub.sink.messages)
    hub.start_worker("worker-2")

    notifications = Notification.objects.filter(sender=staff)
    wait_until(
        lambda: not notifications.exclude(status=NotificationStatus.SENT).exists(),
        timeout=90,
        what="every notification to be sent",
    )
    ids = [m["message"]["Message-ID"] for m in hub.sink.messages]
    expected = {f"<notification.{n.pk}.{n.created_at:%Y%m%d%H%M%S}@localhost>" for n in notifications}
    assert set(ids) == expected
    copies = len(ids) - len(set(ids))
    print(f"{sent_before_the_kill} sent before the kill, {copies} sent twice")
    assert copies <= settings.NOTIFY_RECORD_EVERY * THREADS
    assert sent_before_the_kill < MAILS  # the kill did land mid-batch


def test_a_split_telegram_message_resends_only_the_part_that_failed(own_hub):
    hub = own_hub(NOTIFY_RETRY_BASE_SECONDS="0.2")
    hub.telegram.script.extend(["ok", (502, "Bad Gateway")])
    body = {"title": "Order", "message": ("word " * 2400).strip(), "recipient_type": "telegram", "recipient": "42"}
    with api_client(hub.url, token_for(hub.url, UserFactory())) as api:
        response = api.post("/notifications/send/", json=body)
        assert response.status_code == 202, response.text
        pk = response.json()["id"]

    wait_until(
        lambda: Notification.objects.get(pk=pk).status == NotificationStatus.SENT, timeout=30, what="the message"
    )
    texts = hub.telegram.sent_texts()
    assert len(texts) == 4  # parts 1, 2 (502), 2 again, 3
    assert texts[1] == texts[2] and len(set(texts)) == 3
    notification = Notification.objects.get(pk=pk)
    assert notification.provider_message_id == "1,3,4"
    assert list(notification.attempt_log.order_by("number").values_list("outcome", flat=True)) == ["retry", "sent"]
