import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from dramatiq import Actor, get_broker
from dramatiq.brokers.stub import StubBroker

from core.exceptions import Conflict
from notify import services
from notify.channels import Outbox
from notify.heartbeat import queue_depths
from notify.models import Notification, NotificationAttempt, NotificationKind, NotificationStatus
from orders import services as order_services
from realtime.models import Event
from tests.factories import CustomerFactory, OrderFactory, StaffFactory, UserFactory
from tests.fakes import free_port
from tests.helpers import relayed

pytestmark = pytest.mark.django_db

S = NotificationStatus


def _queued():
    return {queue: n for queue, n in queue_depths().items() if n}


def _batches(queue="notify"):
    """The id lists of the messages waiting on a queue, in order."""
    broker = get_broker()
    if isinstance(broker, StubBroker):
        messages = list(broker.queues[queue].queue)
    else:
        ids = broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)
        messages = broker.client.hmget(f"{broker.namespace}:{queue}.msgs", ids) if ids else []
    return [json.loads(message)["args"][0] for message in messages]


def _send(sender, channel="email", recipient="ann@example.com", **extra):
    fields = {"channel": channel, "recipient": recipient, "title": "Hi", "message": "Hello", **extra}
    notification, _ = services.notification_send(sender=sender, **fields)
    return notification


# ---- order notifications -------------------------------------------------------------


def test_order_create_writes_one_notification_per_channel_from_templates(django_capture_on_commit_callbacks):
    user = UserFactory(first_name="Ann", last_name="Lee")
    with django_capture_on_commit_callbacks(execute=True):
        order = OrderFactory(created_by=user, order_number="ORD-77")
    order_services.preferences_update(customer=order.customer, by=user, telegram_enabled=True)

    email, in_app, telegram = Notification.objects.filter(order=order).order_by("channel")
    assert (email.channel, email.recipient, email.kind) == ("email", user.email, NotificationKind.ORDER_CREATED)
    assert email.title == "Order ORD-77 received"
    assert "Hello Ann Lee," in email.message and "149.99 INR" in email.message
    assert "<strong>ORD-77</strong>" in email.html_message
    assert email.status == S.QUEUED and email.order_event.kind == "created"
    # No chat id on file for a customer made from the user's account.
    assert (telegram.status, telegram.last_error) == (S.SKIPPED, "no Telegram chat id on file")
    # The account that placed it has its own customer record: a message in its inbox too.
    assert (in_app.recipient, in_app.title, in_app.status) == (user.username, email.title, S.QUEUED)
    assert in_app.message == f"Order ORD-77 received: 149.99 INR. Tracking number {order.tracking_number}."
    assert _queued() == {"notify": 1}  # the mail and the inbox message, in one batch


def test_order_status_change_notifies_every_enabled_channel(django_capture_on_commit_callbacks):
    user = UserFactory()
    CustomerFactory(created_by=user, email=user.email, telegram_chat_id=-1001234)
    order = OrderFactory(created_by=user)  # the first order links the record they made with their email
    Notification.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=True):
        order_services.order_change_status(order=order, status="confirmed", by=StaffFactory())

    rows = {n.channel: n for n in Notification.objects.all()}
    assert set(rows) == {"email", "telegram", "in_app"}
    assert rows["in_app"].recipient == user.username
    assert rows["telegram"].recipient == "-1001234"
    assert rows["telegram"].message.startswith(f"Order {order.order_number} is now confirmed.")
    assert rows["email"].title == f"Order {order.order_number} is confirmed"
    assert all(n.status == S.QUEUED and n.kind == NotificationKind.ORDER_STATUS_CHANGED for n in rows.values())
    assert _queued() == {"notify": 1}  # both rows in one message


@pytest.mark.parametrize(
    "preferences, email_reason, telegram_reason",
    [
        ({"order_updates": False}, "the customer turned off order updates", "the customer turned off order updates"),
        ({"email_enabled": False}, "the customer turned off email", ""),
        ({"telegram_enabled": False}, "", "the customer turned off Telegram"),
    ],
)
def test_order_notifications_honour_preferences(preferences, email_reason, telegram_reason):
    user = UserFactory()
    customer = CustomerFactory(created_by=user, email=user.email, telegram_chat_id=42)
    order_services.preferences_update(customer=customer, by=user, **preferences)

    OrderFactory(created_by=user)

    rows = {n.channel: n for n in Notification.objects.all()}
    for channel, reason in (("email", email_reason), ("telegram", telegram_reason)):
        expected = (S.SKIPPED, reason) if reason else (S.PENDING, "")
        assert (rows[channel].status, rows[channel].last_error) == expected, channel


def test_order_rollback_leaves_no_notification_and_sends_nothing(django_capture_on_commit_callbacks):
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            OrderFactory(created_by=user)
            raise RuntimeError("the order's transaction fails after the notifications were written")

    assert Notification.objects.count() == 0
    assert callbacks == []
    assert _queued() == {}


# ---- manual sends and idempotency ------------------------------------------------------


def test_notification_send_renders_escaped_html_and_enqueues_on_commit(user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notification = _send(user, title="Sale <b>", message="50% off & more", priority="urgent")

    notification.refresh_from_db()
    assert notification.status == S.QUEUED and notification.queued_at is not None
    assert "Sale &lt;b&gt;" in notification.html_message and "50% off &amp; more" in notification.html_message
    assert _queued() == {"notify_urgent": 1}


def test_notification_send_with_a_key_creates_once(user):
    first, replayed_first = services.notification_send(
        sender=user, idempotency_key="k1", channel="email", recipient="a@example.com", title="T", message="M"
    )
    second, replayed_second = services.notification_send(
        sender=user, idempotency_key="k1", channel="email", recipient="a@example.com", title="T", message="M"
    )

    assert (replayed_first, replayed_second) == (False, True)
    assert first.pk == second.pk
    assert Notification.objects.count() == 1
    with pytest.raises(Conflict) as exc:
        services.notification_send(
            sender=user, idempotency_key="k1", channel="email", recipient="b@example.com", title="T", message="M"
        )
    assert exc.value.code == "idempotency_key_reused"
    assert Notification.objects.count() == 1


def test_bulk_send_creates_all_rows_and_enqueues_by_priority(user, django_capture_on_commit_callbacks):
    items = [
        {"channel": "email", "recipient": f"u{i}@example.com", "title": "T", "message": "M", "priority": p}
        for i, p in enumerate(["low", "normal", "high", "urgent", "normal"])
    ]
    with django_capture_on_commit_callbacks(execute=True):
        rows, _ = services.notifications_bulk_send(sender=user, items=items)

    assert len(rows) == 5 == Notification.objects.filter(status=S.QUEUED).count()
    assert _queued() == {"notify": 1, "notify_urgent": 1}  # one message per queue carries the batch


def test_enqueue_puts_batch_size_ids_in_a_message(user, settings, django_capture_on_commit_callbacks):
    settings.NOTIFY_BATCH_SIZE = 2
    items = [{"channel": "email", "recipient": f"u{i}@example.com", "title": "T", "message": "M"} for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        rows, _ = services.notifications_bulk_send(sender=user, items=items)

    assert _batches() == [[r.pk for r in rows[:2]], [r.pk for r in rows[2:4]], [rows[4].pk]]


def test_enqueue_marks_the_rows_queued_before_a_worker_can_take_the_message(user, monkeypatch):
    # A worker takes a message the moment it is sent. Rows still being marked
    # queued then are locked, and its claim (SKIP LOCKED) would pass them by.
    rows = [_send(user, recipient=f"u{i}@example.com") for i in range(3)]
    seen = []
    real_send = Actor.send_with_options

    def send_and_look(actor, *, args, **options):
        seen.append(list(Notification.objects.filter(pk__in=args[0]).values_list("status", flat=True)))
        return real_send(actor, args=args, **options)

    monkeypatch.setattr(Actor, "send_with_options", send_and_look)
    services.notifications_enqueue([(n.pk, n.priority) for n in rows])

    assert seen == [[S.QUEUED] * 3]


# ---- delivery -------------------------------------------------------------------------


def test_deliver_sends_once_and_records_the_attempt(user, smtp_sink):
    notification = _send(user)

    services.notifications_deliver(notification_ids=[notification.pk])
    services.notifications_deliver(notification_ids=[notification.pk])  # a duplicate message

    notification.refresh_from_db()
    assert len(smtp_sink.messages) == 1
    assert notification.status == S.SENT and notification.attempts == 1
    assert notification.sent_at is not None and notification.provider_message_id.startswith("<")
    (attempt,) = NotificationAttempt.objects.all()
    assert (attempt.number, attempt.outcome, attempt.error) == (1, "sent", "")


def test_deliver_retries_a_transient_error_later(user, smtp_sink, settings, django_capture_on_commit_callbacks):
    settings.NOTIFY_RETRY_BASE_SECONDS = 10
    smtp_sink.reply_rcpt = "451 try again later"
    notification = _send(user)

    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert notification.status == S.QUEUED
    assert notification.attempts == 1 and "451" in notification.last_error
    wait = (notification.next_attempt_at - timezone.now()).total_seconds()
    assert 4 < wait <= 10  # half to all of the base delay
    assert _queued() == {"notify.DQ": 1}
    # Not due yet: a stray copy of the message must not send early.
    smtp_sink.reply_rcpt = None
    assert services.notifications_deliver(notification_ids=[notification.pk]) == []
    assert smtp_sink.messages == []


def test_deliver_waits_at_least_telegram_retry_after(user, telegram_api, settings):
    settings.NOTIFY_RETRY_BASE_SECONDS = 0.1
    telegram_api.script.append((429, 30))
    notification = _send(user, channel="telegram", recipient="42")

    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert (notification.next_attempt_at - timezone.now()).total_seconds() > 29


def test_deliver_fails_a_permanent_error_at_once(user, smtp_sink):
    smtp_sink.reply_rcpt = "550 5.1.1 no such user"
    notification = _send(user)

    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert notification.status == S.FAILED and notification.failed_at is not None
    assert notification.last_error.startswith("SMTP refused the recipient") and "550" in notification.last_error
    assert _queued() == {}


def test_deliver_gives_up_after_the_last_retry(user, smtp_sink, settings):
    settings.NOTIFY_MAX_RETRIES = 2
    smtp_sink.reply_data = "421 service not available"
    notification = _send(user)

    for _ in range(3):
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
        services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert notification.status == S.FAILED
    assert notification.attempts == 3
    assert notification.last_error.endswith("(gave up after 3 attempts)")
    assert list(notification.attempt_log.values_list("outcome", flat=True)) == ["retry", "retry", "failed"]


def test_a_staff_retry_gives_a_fresh_budget_and_attempts_go_on_counting(user, staff, smtp_sink, settings):
    settings.NOTIFY_MAX_RETRIES = 1
    smtp_sink.reply_data = "421 service not available"
    notification = _send(user)

    def deliver_until_final():
        while True:
            Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
            services.notifications_deliver(notification_ids=[notification.pk])
            notification.refresh_from_db()
            if notification.status == S.FAILED:
                return

    deliver_until_final()
    services.notification_retry(notification=notification, by=staff)
    deliver_until_final()

    assert notification.attempts == 4
    assert notification.last_error.endswith("(gave up after 2 attempts)")
    assert list(notification.attempt_log.order_by("id").values_list("number", flat=True)) == [1, 2, 3, 4]


def test_a_sent_row_keeps_no_stale_error(user, smtp_sink):
    smtp_sink.reply_data = "421 service not available"
    notification = _send(user)
    services.notifications_deliver(notification_ids=[notification.pk])
    notification.refresh_from_db()
    assert notification.last_error

    smtp_sink.reply_data = None
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert (notification.status, notification.last_error) == (S.SENT, "")
    assert notification.attempt_log.order_by("id").first().error  # the attempt's own record keeps it


def test_a_split_telegram_message_sends_only_the_parts_still_missing(user, telegram_api):
    notification = _send(user, channel="telegram", recipient="42", message=("word " * 2000).strip())
    telegram_api.script.extend(["ok", (502, "Bad Gateway")])

    services.notifications_deliver(notification_ids=[notification.pk])
    notification.refresh_from_db()
    assert (notification.status, notification.provider_message_id) == (S.PENDING, "1")
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert notification.status == S.SENT
    texts = telegram_api.sent_texts()
    assert len(texts) == 4 and len(set(texts)) == 3  # part 2 twice (it failed once), part 1 once
    assert texts[1] == texts[2]
    assert notification.provider_message_id == "1,3,4"


def test_telegram_without_a_bot_token_on_a_developer_machine_ends_skipped_not_sent(user, settings):
    settings.DEBUG, settings.TELEGRAM_BOT_TOKEN = True, ""
    notification = _send(user, channel="telegram", recipient="42")

    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert notification.status == S.SKIPPED
    assert "not delivered" in notification.last_error.lower() and "console" in notification.last_error
    assert list(notification.attempt_log.values_list("outcome", flat=True)) == ["not_delivered"]


def test_the_documented_failure_and_retry_on_a_developer_machine(user, staff, settings):
    """README: a bot token with a Bot API address nothing answers shows a
    failure, then a staff retry, with no Telegram account at all."""
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_API_URL = "demo", f"http://127.0.0.1:{free_port()}"
    settings.NOTIFY_MAX_RETRIES = 1
    notification = _send(user, channel="telegram", recipient="42")

    for _ in range(2):
        Notification.objects.filter(pk=notification.pk).update(next_attempt_at=None)
        services.notifications_deliver(notification_ids=[notification.pk])
    notification.refresh_from_db()
    assert notification.status == S.FAILED and "Telegram unreachable" in notification.last_error

    services.notification_retry(notification=notification, by=staff)
    notification.refresh_from_db()
    assert notification.status in (S.PENDING, S.QUEUED) and notification.attempts == 2


def test_deliver_turns_off_telegram_for_a_chat_that_blocked_the_bot(user, telegram_api):
    customer = CustomerFactory(telegram_chat_id=777)
    telegram_api.script.append((403, "Forbidden: bot was blocked by the user"))
    notification = _send(user, channel="telegram", recipient="777")

    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    customer.preferences.refresh_from_db()
    assert notification.status == S.FAILED and "blocked" in notification.last_error
    assert customer.preferences.telegram_enabled is False


def test_deliver_takes_over_a_row_left_sending_by_a_dead_worker(user, smtp_sink, settings):
    settings.NOTIFY_SENDING_TIMEOUT_SECONDS = 60
    notification = _send(user)
    Notification.objects.filter(pk=notification.pk).update(
        status=S.SENDING, sending_at=timezone.now() - timedelta(seconds=30), attempts=1
    )
    services.notifications_deliver(notification_ids=[notification.pk])
    assert smtp_sink.messages == []  # still within the timeout: someone may be sending it

    Notification.objects.filter(pk=notification.pk).update(sending_at=timezone.now() - timedelta(seconds=61))
    services.notifications_deliver(notification_ids=[notification.pk])

    notification.refresh_from_db()
    assert len(smtp_sink.messages) == 1
    assert (notification.status, notification.attempts) == (S.SENT, 2)


def test_deliver_sends_a_batch_over_one_connection_and_records_each_outcome(user, smtp_sink, telegram_api):
    telegram_api.script.append((400, "Bad Request: chat not found"))
    first = _send(user, recipient="a@example.com")
    refused = _send(user, channel="telegram", recipient="42")
    second = _send(user, recipient="b@example.com")

    claimed = services.notifications_deliver(notification_ids=[second.pk, refused.pk, first.pk])

    assert [n.pk for n in claimed] == [first.pk, refused.pk, second.pk]
    rows = Notification.objects.in_bulk([first.pk, refused.pk, second.pk])
    assert [rows[pk].status for pk in (first.pk, refused.pk, second.pk)] == [S.SENT, S.FAILED, S.SENT]
    assert rows[refused.pk].last_error == "Telegram 400: Bad Request: chat not found"
    assert rows[first.pk].provider_message_id != rows[second.pk].provider_message_id
    assert [m["message"]["Message-ID"] for m in smtp_sink.messages] == [
        rows[first.pk].provider_message_id,
        rows[second.pk].provider_message_id,
    ]
    assert len({m["connection"] for m in smtp_sink.messages}) == 1
    outcomes = NotificationAttempt.objects.order_by("notification_id").values_list("notification_id", "outcome")
    assert list(outcomes) == [(first.pk, "sent"), (refused.pk, "failed"), (second.pk, "sent")]


def test_deliver_claims_only_the_rows_that_are_due_and_waiting(user, smtp_sink):
    waiting = _send(user, recipient="a@example.com")
    later = _send(user, recipient="b@example.com")
    Notification.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    done = _send(user, recipient="c@example.com")
    Notification.objects.filter(pk=done.pk).update(status=S.SENT)

    claimed = services.notifications_deliver(notification_ids=[waiting.pk, later.pk, done.pk])

    assert [n.pk for n in claimed] == [waiting.pk]
    assert [m["to"] for m in smtp_sink.messages] == [["a@example.com"]]


def test_deliver_writes_a_group_of_sends_in_a_fixed_number_of_queries(user, smtp_sink, settings):
    def queries_to_deliver(count):
        ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(count)]
        with CaptureQueriesContext(connection) as queries:
            services.notifications_deliver(notification_ids=ids)
        return len(queries)

    assert queries_to_deliver(1) == queries_to_deliver(settings.NOTIFY_RECORD_EVERY)
    assert (
        Notification.objects.filter(status=S.SENT).count()
        == 1 + settings.NOTIFY_RECORD_EVERY
        == len(smtp_sink.messages)
    )


class _Killed(BaseException):
    """What a SIGKILL does to a batch, as far as its records go: nothing after it runs."""


def test_a_batch_killed_midway_leaves_at_most_a_group_of_sends_unrecorded(user, smtp_sink, monkeypatch, settings):
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(3 * settings.NOTIFY_RECORD_EVERY)]
    send, sends = Outbox.send, []

    def send_until_killed(self, notification):
        if len(sends) == 2 * settings.NOTIFY_RECORD_EVERY + 3:
            raise _Killed
        sends.append(notification.pk)
        return send(self, notification)

    monkeypatch.setattr(Outbox, "send", send_until_killed)
    with pytest.raises(_Killed):
        services.notifications_deliver(notification_ids=ids)

    recorded = set(Notification.objects.filter(status=S.SENT).values_list("pk", flat=True))
    assert recorded == set(sends[: 2 * settings.NOTIFY_RECORD_EVERY])
    assert len(sends) - len(recorded) == 3  # sent, not recorded: these go out again


def test_deliver_puts_back_what_the_batch_had_no_time_for(user, smtp_sink, monkeypatch):
    monkeypatch.setattr(services, "BATCH_SECONDS", 0.1)
    smtp_sink.delay = 0.2
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(3)]
    flush_broker = _queued()  # nothing queued yet: _send ran outside on_commit capture
    assert flush_broker == {}

    services.notifications_deliver(notification_ids=ids)

    rows = Notification.objects.in_bulk(ids)
    assert (rows[ids[0]].status, rows[ids[0]].attempts) == (S.SENT, 1)
    assert [(rows[pk].status, rows[pk].attempts) for pk in ids[1:]] == [(S.QUEUED, 0), (S.QUEUED, 0)]
    assert _queued() == {"notify": 1}
    assert len(smtp_sink.messages) == 1


def test_deliver_records_as_it_goes_so_a_crash_loses_little(user, smtp_sink, monkeypatch):
    monkeypatch.setattr(services, "RECORD_EVERY_SECONDS", 0)
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(2)]
    real_send = services.Outbox.send

    def send_then_die(outbox, notification):
        if notification.pk == ids[1]:
            raise SystemExit("the worker is killed")
        return real_send(outbox, notification)

    monkeypatch.setattr(services.Outbox, "send", send_then_die)
    with pytest.raises(SystemExit):
        services.notifications_deliver(notification_ids=ids)

    rows = Notification.objects.in_bulk(ids)
    assert rows[ids[0]].status == S.SENT  # recorded before the crash: not sent again
    assert rows[ids[1]].status == S.SENDING  # left for the sweeper after the timeout


def test_deliver_leaves_alone_a_row_another_worker_took_over(user, smtp_sink, monkeypatch):
    ids = [_send(user, recipient=f"u{i}@example.com").pk for i in range(3)]
    taken_at = timezone.now() + timedelta(minutes=5)
    real_send = services.Outbox.send

    def send_while_another_worker_takes_the_middle_row(outbox, notification):
        if notification.pk == ids[1]:
            Notification.objects.filter(pk=ids[1]).update(sending_at=taken_at)
        return real_send(outbox, notification)

    monkeypatch.setattr(services.Outbox, "send", send_while_another_worker_takes_the_middle_row)
    services.notifications_deliver(notification_ids=ids)

    rows = Notification.objects.in_bulk(ids)
    assert [rows[pk].status for pk in ids] == [S.SENT, S.SENDING, S.SENT]
    assert rows[ids[1]].sent_at is None and rows[ids[1]].provider_message_id == ""
    by_recipient = {m["to"][0]: m["message"]["Message-ID"] for m in smtp_sink.messages}
    assert [rows[pk].provider_message_id for pk in (ids[0], ids[2])] == [
        by_recipient["u0@example.com"],
        by_recipient["u2@example.com"],
    ]
    finished = dict(NotificationAttempt.objects.values_list("notification_id", "finished_at"))
    assert [rows[pk].sent_at for pk in (ids[0], ids[2])] == [finished[ids[0]], finished[ids[2]]]
    relayed()
    changes = Event.objects.filter(type="notification.status_changed").order_by("pk")
    assert [(e.data["notification_id"], e.data["status"]) for e in changes] == [(ids[0], S.SENT), (ids[2], S.SENT)]


def test_retry_requeues_only_failed_notifications(user, staff, django_capture_on_commit_callbacks):
    notification = _send(user)
    with pytest.raises(Conflict):
        services.notification_retry(notification=notification, by=staff)

    Notification.objects.filter(pk=notification.pk).update(status=S.FAILED, attempts=6, failed_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        services.notification_retry(notification=notification, by=staff)

    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.failed_at) == (S.QUEUED, 6, None)
    assert notification.attempts_before_retry == 6
    assert _queued() == {"notify": 1}


# ---- sweeper --------------------------------------------------------------------------


def test_sweep_enqueues_what_fell_through_and_nothing_else(user, settings):
    settings.NOTIFY_STALE_AFTER_SECONDS = 60
    settings.NOTIFY_SENDING_TIMEOUT_SECONDS = 300
    old = timezone.now() - timedelta(seconds=120)
    lost = _send(user)  # enqueue lost: still pending long after creation
    waiting = _send(user)  # on a queue that lost it
    dead = _send(user)  # its worker died mid-send
    fresh = _send(user)
    not_due = _send(user)  # a retry waiting for its backoff
    done = _send(user)
    Notification.objects.filter(pk=lost.pk).update(created_at=old)
    Notification.objects.filter(pk=waiting.pk).update(status=S.QUEUED, queued_at=old, created_at=old)
    Notification.objects.filter(pk=dead.pk).update(status=S.SENDING, sending_at=timezone.now() - timedelta(seconds=301))
    Notification.objects.filter(pk=not_due.pk).update(
        status=S.QUEUED, queued_at=old, next_attempt_at=timezone.now() + timedelta(seconds=30)
    )
    Notification.objects.filter(pk=done.pk).update(status=S.SENT, created_at=old)

    assert services.notifications_sweep() == 3

    assert _batches() == [sorted([lost.pk, waiting.pk, dead.pk])]
    statuses = dict(Notification.objects.values_list("pk", "status"))
    assert statuses[lost.pk] == statuses[waiting.pk] == S.QUEUED
    assert statuses[dead.pk] == S.SENDING
    assert statuses[fresh.pk] == S.PENDING
    assert services.notifications_sweep() == 1  # the dead worker's row, until a worker takes it


def test_admin_retry_action_requeues_failed_notifications(user, django_capture_on_commit_callbacks):
    from django.test import Client

    failed, sent = _send(user), _send(user)
    Notification.objects.filter(pk=failed.pk).update(status=S.FAILED)
    Notification.objects.filter(pk=sent.pk).update(status=S.SENT)
    client = Client()
    client.force_login(StaffFactory(is_superuser=True))

    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/admin/notify/notification/",
            {"action": "retry_failed", "_selected_action": [failed.pk, sent.pk]},
            follow=True,
        )

    assert r.status_code == 200
    assert b"Retrying 1 notification(s); 1 were not failed." in r.content
    statuses = dict(Notification.objects.values_list("pk", "status"))
    assert (statuses[failed.pk], statuses[sent.pk]) == (S.QUEUED, S.SENT)
    assert client.get(f"/admin/notify/notification/{failed.pk}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_deliver_tries_again_shortly_a_row_another_transaction_held(user, smtp_sink):
    """As when the order's delete sets its notifications' order_id to NULL just
    as a worker claims them: the claim skips the held row, and a delayed message
    brings it back, rather than leaving it queued for the sweeper."""
    import threading

    from tests.conftest import service_unavailable

    if connection.vendor != "postgresql":
        service_unavailable("row locks need PostgreSQL; DATABASE_URL does not point at it")
    notification = _send(user)
    get_broker().flush_all()
    held, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            Notification.objects.select_for_update().get(pk=notification.pk)
            held.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert services.notifications_deliver(notification_ids=[notification.pk]) == []
    finally:
        release.set()
        holder.join(10)

    assert _queued() == {"notify.DQ": 1}
    assert _batches("notify.DQ") == [[notification.pk]]
    assert services.notifications_deliver(notification_ids=[notification.pk])[0].pk == notification.pk
    notification.refresh_from_db()
    assert notification.status == S.SENT
