"""The notification API at /api/v1/notifications/: send, bulk, list, detail, stats and retry."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notify import services
from notify.models import IdempotencyKey, Notification, NotificationAttempt
from tests.conftest import client_for
from tests.factories import CustomerFactory, OrderFactory, UserFactory
from tests.helpers import SEED_BULK, SEED_SEND, assert_validation_error

LIST_URL = "/api/v1/notifications/"
SEND_URL = f"{LIST_URL}send/"
BULK_URL = f"{LIST_URL}bulk/"
STATS_URL = f"{LIST_URL}stats/"

STATUSES = ["pending", "queued", "sending", "sent", "failed", "skipped"]

BULK_ITEM = SEED_BULK["notifications"][0]

MISSING = object()


def detail_url(pk):
    return f"{LIST_URL}{pk}/"


def retry_url(pk):
    return f"{LIST_URL}{pk}/retry/"


def _with(base, changes):
    body = {**base, **changes}
    return {name: value for name, value in body.items() if value is not MISSING}


def _ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def _error_code(response, status_code):
    assert response.status_code == status_code, response.content
    return response.json()["error"]["code"]


def _notification(*, created_at=None, latency=None, **fields):
    """A ledger row written directly; `latency` seconds from creation to sent sets `sent_at`."""
    values = {
        "channel": "email",
        "recipient": "someone@example.com",
        "title": "Hello",
        "message": "Body",
        "priority": "normal",
        "status": "pending",
        **fields,
    }
    notification = Notification.objects.create(**values)
    changes = {}
    if created_at is not None:
        changes["created_at"] = created_at
    if latency is not None:
        changes["sent_at"] = (created_at or notification.created_at) + timedelta(seconds=latency)
    if changes:
        Notification.objects.filter(pk=notification.pk).update(**changes)
        notification.refresh_from_db()
    return notification


# --- send --------------------------------------------------------------------


def test_notification_send_seed_payload(user, user_client):
    response = user_client.post(SEND_URL, SEED_SEND)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["channel"] == "email"
    assert body["status"] in ("pending", "queued")
    assert body["sender"] == user.username
    assert body["recipient"] == "demo@example.com"
    assert body["title"] == "Demo Notification"
    assert body["message"] == "This is a test notification!"
    assert body["priority"] == "high"
    assert body["kind"] == "manual"
    assert body["attempts"] == 0
    assert Notification.objects.count() == 1
    row = Notification.objects.get()
    assert row.pk == body["id"]
    assert (row.channel, row.recipient, row.priority, row.sender) == ("email", "demo@example.com", "high", user)
    assert "This is a test notification!" in row.html_message


@pytest.mark.parametrize("chat_id", ["123456789", "-1001234567890"], ids=["private", "group"])
def test_notification_send_telegram_chat_id_accepted(user, user_client, chat_id):
    response = user_client.post(SEND_URL, {**SEED_SEND, "recipient_type": "telegram", "recipient": chat_id})

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["channel"] == "telegram"
    assert body["recipient"] == chat_id
    assert body["status"] in ("pending", "queued")
    assert body["sender"] == user.username
    assert Notification.objects.count() == 1
    row = Notification.objects.get()
    assert (row.channel, row.recipient, row.html_message) == ("telegram", chat_id, "")


def test_notification_send_priority_defaults_to_normal(user_client):
    response = user_client.post(SEND_URL, _with(SEED_SEND, {"priority": MISSING}))

    assert response.status_code == 202, response.content
    assert response.json()["priority"] == "normal"
    assert Notification.objects.get().priority == "normal"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"recipient": "not-an-email"}, "recipient"),
        ({"recipient": "123456789"}, "recipient"),
        ({"recipient_type": "telegram", "recipient": "demo@example.com"}, "recipient"),
        ({"recipient_type": "telegram", "recipient": "12.5"}, "recipient"),
        ({"recipient_type": "telegram", "recipient": "0"}, "recipient"),
        ({"recipient_type": "telegram", "recipient": "-0"}, "recipient"),
        ({"recipient_type": "telegram", "recipient": str(2**52)}, "recipient"),
        ({"recipient_type": "sms"}, "recipient_type"),
        ({"recipient_type": MISSING}, "recipient_type"),
        ({"priority": "critical"}, "priority"),
        ({"title": MISSING}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"message": MISSING}, "message"),
        ({"message": "   "}, "message"),
        ({"recipient": MISSING}, "recipient"),
    ],
    ids=[
        "bad-email",
        "chat-id-as-email",
        "email-as-chat-id",
        "non-integer-chat-id",
        "zero-chat-id",
        "minus-zero-chat-id",
        "chat-id-too-large",
        "unknown-recipient-type",
        "missing-recipient-type",
        "unknown-priority",
        "missing-title",
        "blank-title",
        "title-too-long",
        "missing-message",
        "blank-message",
        "missing-recipient",
    ],
)
def test_notification_send_invalid_input_refused(user_client, changes, field):
    response = user_client.post(SEND_URL, _with(SEED_SEND, changes))

    assert_validation_error(response, field)
    assert Notification.objects.count() == 0


@pytest.mark.parametrize("name", ["channel", "sender", "status"])
def test_notification_send_unknown_field_refused(user_client, name):
    response = user_client.post(SEND_URL, {**SEED_SEND, name: "x"})

    error = assert_validation_error(response, name)
    assert error["fields"][name] == ["Unknown field."]
    assert Notification.objects.count() == 0


def test_notification_send_non_object_body_refused(user_client):
    response = user_client.post(SEND_URL, [SEED_SEND])

    assert_validation_error(response, "non_field_errors")
    assert Notification.objects.count() == 0


# --- bulk --------------------------------------------------------------------


def test_notification_bulk_seed_payload(user, user_client):
    response = user_client.post(BULK_URL, SEED_BULK)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["count"] == 2
    assert len(body["ids"]) == 2
    assert Notification.objects.count() == 2
    assert sorted(body["ids"]) == sorted(Notification.objects.values_list("pk", flat=True))
    first, second = (Notification.objects.get(pk=pk) for pk in body["ids"])
    assert (first.channel, first.recipient, first.title) == ("email", "user1@example.com", "Bulk Notification 1")
    assert (second.channel, second.recipient, second.title) == ("telegram", "123456789", "Bulk Notification 2")
    for row in (first, second):
        assert row.priority == "normal"
        assert row.sender == user
        assert row.status in ("pending", "queued")


def test_notification_bulk_accepts_the_limit_of_1000(user_client):
    response = user_client.post(BULK_URL, {"notifications": [BULK_ITEM] * 1000})

    assert response.status_code == 202, response.content
    assert response.json()["count"] == 1000
    assert len(set(response.json()["ids"])) == 1000
    assert Notification.objects.count() == 1000


@pytest.mark.parametrize(
    "body",
    [
        {"notifications": [BULK_ITEM] * 1001},
        {"notifications": []},
        {"notifications": BULK_ITEM},
    ],
    ids=["over-limit", "empty", "not-a-list"],
)
def test_notification_bulk_list_refused(user_client, body):
    response = user_client.post(BULK_URL, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"]
    assert all(key.startswith("notifications") for key in error["fields"]), error["fields"]
    assert Notification.objects.count() == 0


def test_notification_bulk_missing_list_refused(user_client):
    assert_validation_error(user_client.post(BULK_URL, {}), "notifications")
    assert Notification.objects.count() == 0


def test_notification_bulk_one_invalid_item_refuses_all(user_client):
    items = [BULK_ITEM, {**SEED_BULK["notifications"][1], "recipient": "not-a-chat-id"}, BULK_ITEM]

    response = user_client.post(BULK_URL, {"notifications": items})

    assert response.status_code == 400, response.content
    assert Notification.objects.count() == 0
    assert set(response.json()["error"]["fields"]) == {"notifications[1].recipient"}, response.json()
    assert_validation_error(response, "notifications[1].recipient")


def test_notification_bulk_errors_name_each_invalid_item(user_client):
    items = [_with(BULK_ITEM, {"title": MISSING}), BULK_ITEM, {**BULK_ITEM, "priority": "critical", "extra": 1}]

    response = user_client.post(BULK_URL, {"notifications": items})

    assert response.status_code == 400, response.content
    assert Notification.objects.count() == 0
    expected = {"notifications[0].title", "notifications[2].priority", "notifications[2].extra"}
    assert set(response.json()["error"]["fields"]) == expected, response.json()
    error = assert_validation_error(response, *expected)
    assert error["fields"]["notifications[2].extra"] == ["Unknown field."]


def test_notification_bulk_unknown_top_level_field_refused(user_client):
    response = user_client.post(BULK_URL, {**SEED_BULK, "priority": "high"})

    error = assert_validation_error(response, "priority")
    assert error["fields"]["priority"] == ["Unknown field."]
    assert Notification.objects.count() == 0


# --- idempotency -------------------------------------------------------------


def test_notification_send_idempotency_key_replays_the_same_notification(user_client):
    first = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="send-1")
    second = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="send-1")

    assert first.status_code == 202, first.content
    assert second.status_code == 202, second.content
    assert second.json()["id"] == first.json()["id"]
    assert Notification.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_notification_send_without_idempotency_key_creates_each_time(user_client):
    first = user_client.post(SEND_URL, SEED_SEND)
    second = user_client.post(SEND_URL, SEED_SEND)

    assert first.json()["id"] != second.json()["id"]
    assert Notification.objects.count() == 2
    assert IdempotencyKey.objects.count() == 0


def test_notification_send_idempotency_key_with_another_body_conflicts(user_client):
    first = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="send-1")
    second = user_client.post(SEND_URL, {**SEED_SEND, "title": "Another"}, HTTP_IDEMPOTENCY_KEY="send-1")

    assert first.status_code == 202, first.content
    assert _error_code(second, 409) == "idempotency_key_reused"
    assert Notification.objects.count() == 1
    assert Notification.objects.get().title == "Demo Notification"


def test_notification_idempotency_key_is_per_user(user, other_user, user_client, other_client):
    mine = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="shared-key")
    theirs = other_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="shared-key")
    theirs_again = other_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="shared-key")

    assert mine.status_code == 202, mine.content
    assert theirs.status_code == 202, theirs.content
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs_again.json()["id"] == theirs.json()["id"]
    assert Notification.objects.count() == 2
    assert Notification.objects.get(pk=mine.json()["id"]).sender == user
    assert Notification.objects.get(pk=theirs.json()["id"]).sender == other_user


def test_notification_idempotency_key_per_user_with_another_body(user_client, other_client):
    user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="shared-key")

    response = other_client.post(SEND_URL, {**SEED_SEND, "title": "Theirs"}, HTTP_IDEMPOTENCY_KEY="shared-key")

    assert response.status_code == 202, response.content
    assert Notification.objects.count() == 2


def test_notification_send_idempotency_key_too_long_refused(user_client):
    response = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert_validation_error(response, "Idempotency-Key")
    assert Notification.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_notification_send_idempotency_key_of_255_accepted(user_client):
    response = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="k" * 255)

    assert response.status_code == 202, response.content
    assert IdempotencyKey.objects.get().key == "k" * 255


def test_notification_send_invalid_body_does_not_use_up_the_key(user_client):
    refused = user_client.post(SEND_URL, {**SEED_SEND, "recipient": "nope"}, HTTP_IDEMPOTENCY_KEY="send-1")
    accepted = user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="send-1")

    assert refused.status_code == 400, refused.content
    assert accepted.status_code == 202, accepted.content
    assert Notification.objects.count() == 1


def test_notification_bulk_idempotency_key_replays_the_same_notifications(user_client):
    first = user_client.post(BULK_URL, SEED_BULK, HTTP_IDEMPOTENCY_KEY="bulk-1")
    second = user_client.post(BULK_URL, SEED_BULK, HTTP_IDEMPOTENCY_KEY="bulk-1")

    assert first.status_code == 202, first.content
    assert second.status_code == 202, second.content
    assert second.json() == first.json()
    assert first.json()["count"] == 2
    assert Notification.objects.count() == 2


def test_notification_bulk_idempotency_key_with_another_body_conflicts(user_client):
    user_client.post(BULK_URL, SEED_BULK, HTTP_IDEMPOTENCY_KEY="bulk-1")
    changed = {"notifications": [*SEED_BULK["notifications"], BULK_ITEM]}

    response = user_client.post(BULK_URL, changed, HTTP_IDEMPOTENCY_KEY="bulk-1")

    assert _error_code(response, 409) == "idempotency_key_reused"
    assert Notification.objects.count() == 2


def test_notification_bulk_idempotency_key_too_long_refused(user_client):
    response = user_client.post(BULK_URL, SEED_BULK, HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert_validation_error(response, "Idempotency-Key")
    assert Notification.objects.count() == 0


def test_notification_idempotency_key_from_send_conflicts_on_bulk(user_client):
    user_client.post(SEND_URL, SEED_SEND, HTTP_IDEMPOTENCY_KEY="key-1")

    response = user_client.post(BULK_URL, SEED_BULK, HTTP_IDEMPOTENCY_KEY="key-1")

    assert _error_code(response, 409) == "idempotency_key_reused"
    assert Notification.objects.count() == 1


# --- list --------------------------------------------------------------------


def test_notification_list_paginated_newest_first(user, user_client):
    now = timezone.now()
    rows = [_notification(sender=user, created_at=now - timedelta(minutes=m)) for m in (30, 10, 20)]

    response = user_client.get(LIST_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert body["next"] is None and body["previous"] is None
    assert [item["id"] for item in body["results"]] == [rows[1].pk, rows[2].pk, rows[0].pk]
    assert body["results"][0]["sender"] == user.username
    assert "attempt_log" not in body["results"][0]


def test_notification_list_pages(user, user_client):
    for _ in range(3):
        _notification(sender=user)

    first = user_client.get(LIST_URL, {"page_size": 2}).json()
    second = user_client.get(LIST_URL, {"page_size": 2, "page": 2}).json()

    assert first["count"] == 3
    assert len(first["results"]) == 2 and first["next"] is not None and first["previous"] is None
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"] is not None
    assert {item["id"] for item in first["results"] + second["results"]} == set(
        Notification.objects.values_list("pk", flat=True)
    )


@pytest.fixture
def filter_rows(user):
    """Four rows with known fields; the order's own notifications are cleared away."""
    order = OrderFactory(created_by=user)
    customer = CustomerFactory(created_by=user)
    Notification.objects.all().delete()
    return {
        "a": _notification(channel="email", priority="high", status="sent", order=order, customer=order.customer),
        "b": _notification(channel="telegram", priority="normal", status="failed", order=order),
        "c": _notification(channel="email", priority="low", status="pending", customer=customer),
        "d": _notification(channel="telegram", priority="urgent", status="skipped"),
        "order": order,
        "customer": customer,
    }


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status=sent", "a"),
        ("status=sent&status=failed", "ab"),
        ("channel=telegram", "bd"),
        ("channel=email&status=pending", "c"),
        ("priority=urgent", "d"),
        ("priority=high&priority=low", "ac"),
        ("order={order}", "ab"),
        ("customer={customer}", "c"),
        ("status=queued", ""),
    ],
)
def test_notification_list_filters(staff_client, filter_rows, query, expected):
    query = query.format(order=filter_rows["order"].pk, customer=filter_rows["customer"].pk)

    response = staff_client.get(f"{LIST_URL}?{query}")

    assert sorted(_ids(response)) == sorted(filter_rows[label].pk for label in expected)
    assert response.json()["count"] == len(expected)


def test_notification_list_filters_by_creation_time(staff_client, staff):
    days = {day: _notification(sender=staff, created_at=datetime(2024, 1, day, tzinfo=UTC)).pk for day in (1, 2, 3)}
    middle = "2024-01-02T00:00:00Z"

    after = staff_client.get(LIST_URL, {"created_after": middle})
    before = staff_client.get(LIST_URL, {"created_before": middle})
    between = staff_client.get(
        LIST_URL, {"created_after": "2024-01-01T12:00:00Z", "created_before": "2024-01-02T12:00:00Z"}
    )

    assert sorted(_ids(after)) == [days[2], days[3]]
    assert _ids(before) == [days[1]]
    assert _ids(between) == [days[2]]


@pytest.mark.parametrize(
    "name, value",
    [
        ("status", "bogus"),
        ("channel", "sms"),
        ("priority", "critical"),
        ("order", "abc"),
        ("customer", "abc"),
        ("created_after", "yesterday"),
        ("created_before", "2024-13-01T00:00:00Z"),
    ],
)
def test_notification_list_invalid_filter_refused(user_client, name, value):
    assert_validation_error(user_client.get(LIST_URL, {name: value}), name)


# --- visibility --------------------------------------------------------------


def test_notification_list_shows_notifications_of_my_order(user, user_client, other_client, staff_client):
    order = OrderFactory(created_by=user)
    ids = set(order.notifications.values_list("pk", flat=True))
    assert len(ids) == 3  # one per channel: email, Telegram, the placer's inbox
    unrelated = _notification(sender=UserFactory())

    assert set(_ids(user_client.get(LIST_URL))) == ids
    assert _ids(other_client.get(LIST_URL)) == []
    assert set(_ids(staff_client.get(LIST_URL))) == ids | {unrelated.pk}
    for pk in ids:
        assert user_client.get(detail_url(pk)).status_code == 200
        assert _error_code(other_client.get(detail_url(pk)), 404) == "not_found"
        assert staff_client.get(detail_url(pk)).status_code == 200


def test_notification_list_hides_the_orders_of_someone_whose_email_i_used(user, user_client, other_client):
    """Pre-squat: a record made with the placer's email does not bring the
    placer's order notifications, bodies and all, to its creator."""
    placer = UserFactory()
    squatted = CustomerFactory(created_by=user, email=placer.email)
    order = OrderFactory(created_by=placer)
    assert order.customer != squatted
    by_order = set(order.notifications.values_list("pk", flat=True))
    assert len(by_order) == 3
    assert all(n.sender == placer for n in order.notifications.all())

    assert set(_ids(client_for(placer).get(LIST_URL))) == by_order
    assert _ids(user_client.get(LIST_URL)) == []
    assert _ids(other_client.get(LIST_URL)) == []
    for pk in by_order:
        assert user_client.get(detail_url(pk)).status_code == 404


def test_notification_list_visibility_paths(user, other_user, user_client, other_client):
    my_order = OrderFactory(created_by=user)
    my_customer = CustomerFactory(created_by=user)
    other_customer = CustomerFactory(created_by=other_user)
    Notification.objects.all().delete()
    mine = {
        _notification(sender=user).pk,
        _notification(order=my_order).pk,
        _notification(customer=my_customer).pk,
    }
    theirs = {
        _notification(sender=other_user).pk,
        _notification(customer=other_customer).pk,
    }
    nobodys = _notification().pk

    assert set(_ids(user_client.get(LIST_URL))) == mine
    assert set(_ids(other_client.get(LIST_URL))) == theirs
    for pk in theirs | {nobodys}:
        assert _error_code(user_client.get(detail_url(pk)), 404) == "not_found"
    for pk in mine | {nobodys}:
        assert _error_code(other_client.get(detail_url(pk)), 404) == "not_found"


def test_notification_list_hides_a_customer_that_only_carries_my_email(user, other_user, user_client):
    """Register as someone: an account with the email of a record someone else
    made sees nothing of it, verified or not, until it claims the record."""
    customer = CustomerFactory(created_by=other_user, email=user.email.upper())
    about_it = _notification(customer=customer)

    assert _ids(user_client.get(LIST_URL)) == []
    assert user_client.get(detail_url(about_it.pk)).status_code == 404


def test_notification_detail_unknown_id_not_found(staff_client):
    assert _error_code(staff_client.get(detail_url(999_999)), 404) == "not_found"


# --- detail ------------------------------------------------------------------


def test_notification_detail_includes_empty_attempt_log(user, user_client):
    notification = _notification(sender=user)

    response = user_client.get(detail_url(notification.pk))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == notification.pk
    assert body["attempt_log"] == []
    assert body["sender"] == user.username


def test_notification_detail_shows_delivery_attempt(user, user_client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    pk = user_client.post(SEND_URL, SEED_SEND).json()["id"]

    services.notifications_deliver(notification_ids=[pk])

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["demo@example.com"]
    assert mail.outbox[0].subject == "Demo Notification"
    assert NotificationAttempt.objects.count() == 1
    response = user_client.get(detail_url(pk))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "sent"
    assert body["attempts"] == 1
    assert body["sent_at"] is not None
    assert body["provider_message_id"]
    assert len(body["attempt_log"]) == 1
    attempt = body["attempt_log"][0]
    assert attempt["number"] == 1
    assert attempt["outcome"] == "sent"
    assert attempt["error"] == ""
    assert attempt["provider_message_id"] == body["provider_message_id"]
    assert attempt["started_at"] <= attempt["finished_at"]


# --- stats -------------------------------------------------------------------


def _empty_stats():
    return {
        "total": 0,
        "by_status": dict.fromkeys(STATUSES, 0),
        "by_channel": {"email": 0, "telegram": 0, "in_app": 0},
        "by_priority": {"low": 0, "normal": 0, "high": 0, "urgent": 0},
        "success_rate": None,
        "latency_seconds": {"median": None, "p95": None},
    }


def test_notification_stats_empty(user_client):
    response = user_client.get(STATS_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["overall"] == _empty_stats()
    assert body["last_24h"] == _empty_stats()
    assert set(body) == {"overall", "last_24h", "last_hour"}


def test_notification_stats_counts_a_known_mix(staff_client):
    now = timezone.now()
    recent, edge, old, older = (
        now - timedelta(hours=1),
        now - timedelta(hours=23),
        now - timedelta(hours=25),
        now - timedelta(days=3),
    )
    # The last 24 hours: eight rows.
    _notification(channel="email", priority="high", status="sent", created_at=recent, latency=10)
    _notification(channel="telegram", priority="normal", status="sent", created_at=recent, latency=40)
    _notification(channel="telegram", priority="normal", status="sent", created_at=edge, latency=40)
    _notification(channel="email", priority="normal", status="failed", created_at=recent)
    _notification(channel="telegram", priority="low", status="pending", created_at=recent)
    _notification(channel="email", priority="urgent", status="queued", created_at=recent)
    _notification(channel="email", priority="normal", status="sending", created_at=edge)
    _notification(channel="telegram", priority="low", status="skipped", created_at=recent)
    # Older: three rows that count only overall.
    _notification(channel="email", priority="normal", status="sent", created_at=old, latency=4)
    _notification(channel="telegram", priority="urgent", status="sent", created_at=older, latency=6)
    _notification(channel="telegram", priority="low", status="failed", created_at=older)

    response = staff_client.get(STATS_URL)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"overall", "last_24h", "last_hour"}
    overall, last_24h = body["overall"], body["last_24h"]
    assert overall["total"] == 11
    assert overall["by_status"] == {"pending": 1, "queued": 1, "sending": 1, "sent": 5, "failed": 2, "skipped": 1}
    assert overall["by_channel"] == {"email": 5, "telegram": 6, "in_app": 0}
    assert overall["by_priority"] == {"low": 3, "normal": 5, "high": 1, "urgent": 2}
    assert overall["success_rate"] == pytest.approx(5 / 7, abs=1e-4)
    # Latencies 4, 6, 10, 40, 40: every usual definition of p95 gives 40.
    assert overall["latency_seconds"]["median"] == pytest.approx(10, abs=1e-3)
    assert overall["latency_seconds"]["p95"] == pytest.approx(40, abs=1e-3)

    assert last_24h["total"] == 8
    assert last_24h["by_status"] == {"pending": 1, "queued": 1, "sending": 1, "sent": 3, "failed": 1, "skipped": 1}
    assert last_24h["by_channel"] == {"email": 4, "telegram": 4, "in_app": 0}
    assert last_24h["by_priority"] == {"low": 2, "normal": 4, "high": 1, "urgent": 1}
    assert last_24h["success_rate"] == pytest.approx(3 / 4, abs=1e-4)
    # Latencies 10, 40, 40.
    assert last_24h["latency_seconds"]["median"] == pytest.approx(40, abs=1e-3)
    assert last_24h["latency_seconds"]["p95"] == pytest.approx(40, abs=1e-3)


def test_notification_stats_success_rate_none_without_finished_rows(staff_client):
    _notification(status="pending")
    _notification(status="skipped")

    body = staff_client.get(STATS_URL).json()

    for window in ("overall", "last_24h"):
        assert body[window]["total"] == 2
        assert body[window]["success_rate"] is None
        assert body[window]["latency_seconds"] == {"median": None, "p95": None}


def test_notification_stats_single_latency(staff_client):
    _notification(status="sent", latency=7)

    latency = staff_client.get(STATS_URL).json()["last_24h"]["latency_seconds"]

    assert latency["median"] == pytest.approx(7, abs=1e-3)
    assert latency["p95"] == pytest.approx(7, abs=1e-3)


def test_notification_stats_p95_within_observed_latencies(staff_client):
    _notification(status="sent", latency=10)
    _notification(status="sent", latency=20)

    latency = staff_client.get(STATS_URL).json()["last_24h"]["latency_seconds"]

    assert latency["median"] == pytest.approx(15, abs=1e-3)
    # The 95th percentile of 10 s and 20 s lies near the slower one, never beyond it.
    assert 15 <= latency["p95"] <= 20, latency


def test_notification_stats_respect_visibility(user, other_user, user_client, other_client, staff_client):
    _notification(sender=user, status="sent", latency=5)
    _notification(sender=user, status="failed")
    for _ in range(3):
        _notification(sender=other_user, status="sent", latency=5, channel="telegram")

    mine = user_client.get(STATS_URL).json()["overall"]
    theirs = other_client.get(STATS_URL).json()["overall"]
    everything = staff_client.get(STATS_URL).json()["overall"]

    assert mine["total"] == 2
    assert mine["by_status"] == {"pending": 0, "queued": 0, "sending": 0, "sent": 1, "failed": 1, "skipped": 0}
    assert mine["by_channel"] == {"email": 2, "telegram": 0, "in_app": 0}
    assert mine["success_rate"] == pytest.approx(0.5)
    assert theirs["total"] == 3
    assert theirs["success_rate"] == pytest.approx(1.0)
    assert everything["total"] == 5
    assert everything["success_rate"] == pytest.approx(4 / 5, abs=1e-4)


def test_notification_stats_apply_filters(staff_client):
    _notification(channel="email", status="sent", latency=1)
    _notification(channel="telegram", status="failed")
    _notification(channel="telegram", status="pending")

    body = staff_client.get(STATS_URL, {"channel": "telegram"}).json()["overall"]

    assert body["total"] == 2
    assert body["by_channel"] == {"email": 0, "telegram": 2, "in_app": 0}
    assert body["success_rate"] == 0


def test_notification_stats_invalid_filter_refused(staff_client):
    assert_validation_error(staff_client.get(STATS_URL, {"status": "bogus"}), "status")


# --- retry -------------------------------------------------------------------


def _failed(**fields):
    return _notification(
        status="failed",
        attempts=6,
        last_error="SMTP 550: mailbox unavailable",
        failed_at=timezone.now(),
        **fields,
    )


def test_notification_retry_failed_by_staff(staff_client, user):
    notification = _failed(sender=user)

    response = staff_client.post(retry_url(notification.pk))

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == notification.pk
    assert body["status"] in ("pending", "queued")
    assert body["attempts"] == 6  # numbering goes on; the retry budget starts afresh
    notification.refresh_from_db()
    assert notification.status in ("pending", "queued")
    assert (notification.attempts, notification.attempts_before_retry) == (6, 6)
    assert notification.failed_at is None
    assert notification.next_attempt_at is None
    assert Notification.objects.count() == 1


def test_notification_retry_refused_for_regular_user(user, user_client):
    notification = _failed(sender=user)

    response = user_client.post(retry_url(notification.pk))

    assert _error_code(response, 403) == "permission_denied"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("failed", 6)


@pytest.mark.parametrize("status", ["pending", "queued", "sending", "sent", "skipped"])
def test_notification_retry_not_failed_conflicts(staff_client, status):
    notification = _notification(status=status, attempts=1)

    response = staff_client.post(retry_url(notification.pk))

    assert _error_code(response, 409) == "not_failed"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (status, 1)


def test_notification_retry_unknown_id_not_found(staff_client):
    assert _error_code(staff_client.post(retry_url(999_999)), 404) == "not_found"


# --- authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("get", LIST_URL, None),
        ("get", "detail", None),
        ("get", STATS_URL, None),
        ("post", SEND_URL, SEED_SEND),
        ("post", BULK_URL, SEED_BULK),
        ("post", "retry", None),
    ],
    ids=["list", "detail", "stats", "send", "bulk", "retry"],
)
def test_notification_api_requires_authentication(db, anon_client, method, url, body):
    notification = _failed()
    url = {"detail": detail_url(notification.pk), "retry": retry_url(notification.pk)}.get(url, url)

    response = getattr(anon_client, method)(url, body)

    assert _error_code(response, 401) == "not_authenticated"
    assert Notification.objects.count() == 1
    notification.refresh_from_db()
    assert notification.status == "failed"


def test_notification_api_refuses_a_bad_token(anon_client, db):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = anon_client.post(SEND_URL, SEED_SEND)

    assert _error_code(response, 401) == "authentication_failed"
    assert Notification.objects.count() == 0
