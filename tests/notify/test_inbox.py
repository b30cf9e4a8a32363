"""The in-app channel and the inbox at /api/v1/inbox/: delivery into it, who
sees what, read state and its counts, and the events every change records."""

import random
import threading

import pytest

from notify import inbox, services
from notify.models import Inbox, InboxMessage, Notification
from orders import services as order_services
from realtime import events
from realtime.models import Event
from realtime.selectors import events_after
from tests.conftest import client_for
from tests.factories import OrderFactory, UserFactory
from tests.helpers import assert_validation_error, relayed

SEND_URL = "/api/v1/notifications/send/"
BULK_URL = "/api/v1/notifications/bulk/"
INBOX_URL = "/api/v1/inbox/"
COUNTS_URL = f"{INBOX_URL}counts/"

pytestmark = pytest.mark.django_db


def in_app(username, title="Hello", message="In the hub"):
    return {"recipient_type": "in_app", "recipient": username, "title": title, "message": message}


def deliver(*notifications):
    services.notifications_deliver(notification_ids=[n.pk for n in notifications])


def send_and_deliver(sender, recipient, **fields):
    """An in_app notification from `sender` to `recipient`, sent and delivered; its message."""
    notification, _ = services.notification_send(
        sender=sender, channel="in_app", recipient=recipient.username, title="Hi", message="Body", **fields
    )
    deliver(notification)
    return InboxMessage.objects.get(notification=notification)


def counts(client):
    r = client.get(COUNTS_URL)
    assert r.status_code == 200, r.content
    return r.json()


def recounted(user):
    """The counts as the messages say, to hold the kept counts against."""
    kept = InboxMessage.objects.filter(user=user, archived_at__isnull=True)
    return {"unseen": kept.filter(seen_at__isnull=True).count(), "unread": kept.filter(read_at__isnull=True).count()}


def last_event_id():
    relayed()
    return Event.objects.order_by("id").values_list("id", flat=True).last() or 0


def inbox_events(user, after=0):
    relayed()
    return [e for e in events_after(user=user, after=after) if e.type.startswith("inbox.")]


# ---- the in_app channel ---------------------------------------------------------------------------


def test_an_in_app_send_is_delivered_into_the_recipients_inbox(user, other_user, user_client):
    other_client = client_for(other_user)
    r = user_client.post(SEND_URL, in_app(other_user.username, title="Lunch?"))
    assert r.status_code == 202, r.content
    assert r.json()["channel"] == "in_app" and r.json()["recipient"] == other_user.username
    notification = Notification.objects.get(pk=r.json()["id"])

    deliver(notification)

    notification.refresh_from_db()
    message = InboxMessage.objects.get()
    assert notification.status == "sent" and notification.attempts == 1
    assert notification.provider_message_id == str(message.pk)
    page = other_client.get(INBOX_URL).json()
    assert [m["id"] for m in page["results"]] == [message.pk]
    assert page["results"][0] == {
        "id": message.pk,
        "kind": "manual",
        "title": "Lunch?",
        "message": "In the hub",
        "order": None,
        "notification": notification.pk,
        "created_at": page["results"][0]["created_at"],
        "seen_at": None,
        "read_at": None,
        "archived_at": None,
    }
    assert counts(other_client) == {"unseen": 1, "unread": 1}
    assert user_client.get(INBOX_URL).json()["results"] == []  # the sender's inbox is their own
    assert counts(user_client) == {"unseen": 0, "unread": 0}


def test_an_in_app_send_to_no_active_account_is_refused_and_writes_nothing(user, user_client):
    gone = UserFactory(is_active=False)
    for name in ["nobody-by-this-name", gone.username]:
        assert_validation_error(user_client.post(SEND_URL, in_app(name)), "recipient")
    body = {"notifications": [in_app(user.username), in_app("nobody-by-this-name"), in_app(gone.username)]}
    assert_validation_error(
        user_client.post(BULK_URL, body), "notifications[1].recipient", "notifications[2].recipient"
    )
    assert Notification.objects.count() == 0


def test_a_bulk_in_app_send_asks_for_its_accounts_in_one_query(user, user_client, django_assert_max_num_queries):
    recipients = [UserFactory() for _ in range(5)]
    body = {"notifications": [in_app(r.username) for r in recipients]}
    with django_assert_max_num_queries(12):
        r = user_client.post(BULK_URL, body)
    assert r.status_code == 202, r.content
    assert Notification.objects.filter(channel="in_app").count() == 5


def test_a_delivery_that_runs_again_stores_one_message(user, other_user):
    message = send_and_deliver(user, other_user)
    notification = message.notification

    # A worker died after storing it, before recording so: the row is sent again.
    Notification.objects.filter(pk=notification.pk).update(status="queued")
    deliver(notification)

    notification.refresh_from_db()
    assert notification.status == "sent" and notification.provider_message_id == str(message.pk)
    assert InboxMessage.objects.count() == 1
    assert Inbox.objects.get(user=other_user).counts() == {"unseen": 1, "unread": 1}
    assert [e.type for e in inbox_events(other_user)] == [events.INBOX_MESSAGE_CREATED, events.INBOX_COUNTS_CHANGED]


def test_an_account_gone_before_delivery_fails_it_and_tells_the_sender(user, other_user):
    notification, _ = services.notification_send(
        sender=user, channel="in_app", recipient=other_user.username, title="Hi", message="Body"
    )
    other_user.is_active = False
    other_user.save()

    deliver(notification)

    notification.refresh_from_db()
    assert notification.status == "failed"
    assert notification.last_error == f"No active account is named {other_user.username!r}."
    alert = Notification.objects.get(kind="delivery_failed")
    assert (alert.channel, alert.recipient, alert.sender) == ("in_app", user.username, None)
    assert alert.title == f"Your notification to {other_user.username} failed"
    assert notification.last_error in alert.message and '"Hi"' in alert.message

    deliver(alert)

    (message,) = InboxMessage.objects.filter(user=user)
    assert message.kind == "delivery_failed" and message.title == alert.title
    assert InboxMessage.objects.filter(user=other_user).count() == 0


def test_a_failure_alert_that_fails_alerts_no_one(user):
    alert, _ = services.notification_send(
        sender=user, channel="in_app", recipient=user.username, title="Hi", message="Body"
    )
    Notification.objects.filter(pk=alert.pk).update(kind="delivery_failed")
    user.is_active = False
    user.save()

    deliver(alert)

    assert Notification.objects.get(pk=alert.pk).status == "failed"
    assert Notification.objects.count() == 1


def test_a_failure_with_no_sender_alerts_no_one(other_user):
    notification, _ = services.notification_send(
        sender=None, channel="in_app", recipient=other_user.username, title="Hi", message="Body"
    )
    other_user.is_active = False
    other_user.save()
    deliver(notification)
    assert Notification.objects.get().status == "failed"


# ---- an order's in_app row ------------------------------------------------------------------------


def test_an_order_adds_an_in_app_row_for_the_customers_account(user, staff):
    order = OrderFactory(created_by=user)
    rows = {n.channel: n for n in Notification.objects.filter(order=order)}
    assert set(rows) == {"email", "telegram", "in_app"}
    assert rows["in_app"].recipient == user.username and rows["in_app"].status == "pending"
    assert rows["in_app"].title == f"Order {order.order_number} received"

    deliver(rows["in_app"])

    message = InboxMessage.objects.get(user=user)
    assert (message.kind, message.order_id) == ("order_created", order.pk)
    assert order.tracking_number in message.message


def test_an_orders_inbox_message_outlives_the_order(user, staff):
    order = OrderFactory(created_by=user)
    deliver(Notification.objects.get(order=order, channel="in_app"))

    order_services.order_delete(order=order, by=staff)

    assert InboxMessage.objects.get(user=user).order_id == order.pk  # what it was about, as sent


def test_an_order_of_a_customer_who_turned_off_in_app_messages_skips_its_row(user, staff):
    order = OrderFactory(created_by=user)
    order.customer.preferences.in_app_enabled = False
    order.customer.preferences.save()

    order_services.order_change_status(order=order, status="confirmed", by=staff)

    row = Notification.objects.get(order=order, channel="in_app", kind="order_status_changed")
    assert (row.status, row.last_error, row.sender) == ("skipped", "the customer turned off in-app messages", staff)


def test_preferences_take_in_app_enabled(user, user_client):
    order = OrderFactory(created_by=user)
    url = f"/api/v1/customers/{order.customer_id}/preferences/"
    assert user_client.get(url).json()["in_app_enabled"] is True
    r = user_client.patch(url, {"in_app_enabled": False})
    assert r.status_code == 200, r.content
    assert r.json()["in_app_enabled"] is False


# ---- who sees a message -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["sender", "another user", "staff"])
def test_no_one_but_its_owner_sees_or_changes_a_message(user, other_user, staff, who):
    message = send_and_deliver(user, other_user)
    client = client_for({"sender": user, "another user": UserFactory(), "staff": staff}[who])

    assert client.get(f"{INBOX_URL}{message.pk}/").status_code == 404
    for change in ["read", "unread", "archive", "unarchive"]:
        assert client.post(f"{INBOX_URL}{message.pk}/{change}/").status_code == 404
    assert client.get(INBOX_URL).json()["results"] == []
    assert counts(client) == {"unseen": 0, "unread": 0}
    assert client.post(f"{INBOX_URL}read-all/", {}).json()["updated"] == 0

    message.refresh_from_db()
    assert (message.seen_at, message.read_at, message.archived_at) == (None, None, None)
    assert Inbox.objects.get(user=other_user).counts() == {"unseen": 1, "unread": 1}


def test_an_inbox_events_go_to_its_owner_alone_staff_included(user, other_user, staff):
    send_and_deliver(user, other_user)
    send_and_deliver(user, staff)
    relayed()

    theirs = {e.type for e in events_after(user=other_user, after=0) if e.type.startswith("inbox.")}
    assert theirs == {events.INBOX_MESSAGE_CREATED, events.INBOX_COUNTS_CHANGED}
    staff_sees = [e for e in events_after(user=staff, after=0) if e.type.startswith("inbox.")]
    assert len(staff_sees) == 2 and all(e.audience.get() == staff for e in staff_sees)
    assert inbox_events(user) == []
    assert all(e.private for e in Event.objects.filter(type__startswith="inbox."))
    # The ledger rows stay staff's to see, as every notification.
    assert {e.type for e in events_after(user=staff, after=0)} >= {events.NOTIFICATION_STATUS_CHANGED}


def test_unauthenticated_requests_are_refused(anon_client):
    assert anon_client.get(INBOX_URL).status_code == 401
    assert anon_client.get(COUNTS_URL).status_code == 401
    assert anon_client.post(f"{INBOX_URL}seen/").status_code == 401


# ---- read state and counts --------------------------------------------------------------------


def test_read_unread_archive_and_unarchive_move_the_message_and_the_counts(user, other_user):
    client = client_for(other_user)
    message = send_and_deliver(user, other_user)
    url = f"{INBOX_URL}{message.pk}/"
    after = last_event_id()

    steps = [
        ("read", {"unseen": 0, "unread": 0}),
        ("read", {"unseen": 0, "unread": 0}),  # done already: nothing changes
        ("unread", {"unseen": 0, "unread": 1}),
        ("archive", {"unseen": 0, "unread": 0}),
        ("unarchive", {"unseen": 0, "unread": 1}),
    ]
    for change, expected in steps:
        r = client.post(f"{url}{change}/")
        assert r.status_code == 200, r.content
        assert counts(client) == expected == recounted(other_user), change
    body = client.get(url).json()
    assert body["seen_at"] and body["read_at"] is None and body["archived_at"] is None

    recorded = [(e.type, e.data.get("read_at") is not None) for e in inbox_events(other_user, after=after)]
    changed, counted = events.INBOX_MESSAGE_CHANGED, events.INBOX_COUNTS_CHANGED
    assert recorded == [
        (changed, True),
        (counted, False),  # read
        (changed, False),
        (counted, False),  # unread
        (changed, False),
        (counted, False),  # archive
        (changed, False),
        (counted, False),  # unarchive
    ]
    last = inbox_events(other_user, after=after)[-1]
    assert last.data == {"unseen": 0, "unread": 1, "marked_all": None}


def test_a_change_to_one_message_takes_no_body(user, other_user):
    client = client_for(other_user)
    message = send_and_deliver(user, other_user)
    url = f"{INBOX_URL}{message.pk}/read/"
    assert client.post(url, b"\x00", content_type="application/json").status_code == 400
    assert_validation_error(client.post(url, {"read": False}), "non_field_errors")
    assert InboxMessage.objects.get().read_at is None
    assert client.post(url, {}).status_code == 200


def test_archiving_a_read_message_changes_no_count_and_says_only_that_it_changed(user, other_user):
    client = client_for(other_user)
    message = send_and_deliver(user, other_user)
    client.post(f"{INBOX_URL}{message.pk}/read/")
    after = last_event_id()

    client.post(f"{INBOX_URL}{message.pk}/archive/")

    assert [e.type for e in inbox_events(other_user, after=after)] == [events.INBOX_MESSAGE_CHANGED]


def test_seen_and_read_all_mark_everything_up_to_the_id_given(user, other_user):
    client = client_for(other_user)
    first, second, third = [send_and_deliver(user, other_user) for _ in range(3)]
    archived = send_and_deliver(user, other_user)
    client.post(f"{INBOX_URL}{archived.pk}/archive/")
    after = last_event_id()

    r = client.post(f"{INBOX_URL}seen/", {"up_to": second.pk})
    assert r.status_code == 200, r.content
    assert r.json() == {"updated": 2, "unseen": 1, "unread": 3}
    r = client.post(f"{INBOX_URL}read-all/", {})
    assert r.json() == {"updated": 3, "unseen": 0, "unread": 0} == {"updated": 3, **recounted(other_user)}
    # No body is all of them, as {} is.
    assert client.post(f"{INBOX_URL}read-all/").json() == {"updated": 0, "unseen": 0, "unread": 0}

    archived.refresh_from_db()
    assert archived.read_at is None  # the archive is left as it was
    seen, read = inbox_events(other_user, after=after)  # one event each, none for the repeat
    assert seen.type == read.type == events.INBOX_COUNTS_CHANGED
    assert seen.data["marked_all"]["state"] == "seen" and seen.data["marked_all"]["up_to"] == second.pk
    assert read.data["marked_all"]["state"] == "read" and read.data["marked_all"]["up_to"] is None
    assert (read.data["unseen"], read.data["unread"]) == (0, 0)


@pytest.mark.parametrize("body", [{"up_to": 0}, {"up_to": "x"}, {"up_to": 1, "also": 2}])
def test_a_bad_up_to_is_refused(user_client, body):
    r = user_client.post(f"{INBOX_URL}read-all/", body)
    assert r.status_code == 400, r.content


def test_the_counts_stay_those_of_the_messages_whatever_is_done(user, other_user):
    client = client_for(other_user)
    messages = [send_and_deliver(user, other_user) for _ in range(6)]
    rng = random.Random(7)
    for _ in range(40):
        if rng.random() < 0.15:
            client.post(f"{INBOX_URL}{rng.choice(['seen', 'read-all'])}/", {"up_to": rng.choice(messages).pk})
        else:
            change = rng.choice(["read", "unread", "archive", "unarchive"])
            client.post(f"{INBOX_URL}{rng.choice(messages).pk}/{change}/")
        assert counts(client) == recounted(other_user)


# ---- the list ------------------------------------------------------------------------------------


def test_the_list_is_newest_first_in_pages_by_cursor(user, other_user):
    client = client_for(other_user)
    messages = [send_and_deliver(user, other_user) for _ in range(23)]
    newest_first = [m.pk for m in reversed(messages)]

    page = client.get(INBOX_URL).json()
    assert [m["id"] for m in page["results"]] == newest_first[:20]
    assert page["previous"] is None
    send_and_deliver(user, other_user)  # a new one at the top does not move the pages after
    rest = client.get(page["next"]).json()
    assert [m["id"] for m in rest["results"]] == newest_first[20:]
    assert rest["next"] is None
    assert len(client.get(INBOX_URL, {"page_size": 5}).json()["results"]) == 5


def test_the_list_filters_unread_and_archived(user, other_user):
    client = client_for(other_user)
    read, unread, archived = [send_and_deliver(user, other_user) for _ in range(3)]
    client.post(f"{INBOX_URL}{read.pk}/read/")
    client.post(f"{INBOX_URL}{archived.pk}/archive/")

    def ids(**query):
        r = client.get(INBOX_URL, query)
        assert r.status_code == 200, r.content
        return [m["id"] for m in r.json()["results"]]

    assert ids() == [unread.pk, read.pk]  # the archive aside
    assert ids(unread="true") == [unread.pk]
    assert ids(unread="false") == [read.pk]
    assert ids(archived="true") == [archived.pk]
    assert ids(archived="false") == [unread.pk, read.pk]
    assert client.get(f"{INBOX_URL}{archived.pk}/").status_code == 200  # an archived message stays readable


@pytest.mark.parametrize(
    "query, status",
    [
        ({"cursor": "not-a-cursor"}, 404),
        ({"page_size": "0"}, 400),
        ({"page": "2"}, 400),
        ({"ordering": "id"}, 400),
        ({"unread": "maybe"}, 400),
        ({"archived": "yes please"}, 400),
    ],
)
def test_bad_list_parameters_are_refused(user_client, query, status):
    r = user_client.get(INBOX_URL, query)
    assert r.status_code == status, r.content
    assert "error" in r.json()


# ---- writes at once ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_changes_at_once_to_one_inbox_leave_counts_that_match_and_publish_them_last(user, other_user):
    from django.db import connection

    from tests.conftest import service_unavailable

    if connection.vendor != "postgresql":
        service_unavailable("concurrent writers need PostgreSQL (DATABASE_URL)")
    messages = [send_and_deliver(user, other_user) for _ in range(8)]
    after = last_event_id()
    start = threading.Barrier(len(messages))

    def read(message):
        start.wait()
        try:
            inbox.inbox_message_change(message=message, change="read")
        finally:
            connection.close()

    threads = [threading.Thread(target=read, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Inbox.objects.get(user=other_user).counts() == recounted(other_user) == {"unseen": 0, "unread": 0}
    published = [e.data for e in inbox_events(other_user, after=after) if e.type == events.INBOX_COUNTS_CHANGED]
    # Each write published the counts it left: 7, 6, … 0 unread, in the log's order.
    assert [c["unread"] for c in published] == list(range(len(messages) - 1, -1, -1))
