import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache, caches
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from notify import services as notify_services
from notify.models import Notification
from notify.selectors import notification_list
from orders import services as order_services
from orders.models import Order
from orders.selectors import customer_list, order_list
from realtime import events, relay, selectors, services
from realtime.models import Event, PendingEvent, PruneMark
from tests.factories import CustomerFactory, OrderFactory, UserFactory
from tests.helpers import relayed

pytestmark = pytest.mark.django_db

TICKET_URL = "/api/v1/realtime/ticket/"


@pytest.fixture
def published(monkeypatch):
    """What the relay hands to the fan-out once a transaction commits."""
    calls = []
    monkeypatch.setattr(relay, "events_publish", calls.append)
    return calls


def _event(type_):
    relayed()
    (event,) = Event.objects.filter(type=type_)
    return event


def _audience(event):
    return set(event.audience.values_list("pk", flat=True))


def _order_data(order):
    order.refresh_from_db()
    return {
        "order_id": order.pk,
        "order_number": order.order_number,
        "customer_id": order.customer_id,
        "customer_name": order.customer.name,
        "status": order.status,
        "total_amount": str(order.total_amount),
        "currency": order.currency,
        "tracking_number": order.tracking_number,
        "updated_at": order.updated_at.isoformat(),
    }


def _notification_data(notification):
    notification.refresh_from_db()
    return {
        "notification_id": notification.pk,
        "order_id": notification.order_id,
        "customer_id": notification.customer_id,
        "channel": notification.channel,
        "recipient": notification.recipient,
        "title": notification.title,
        "priority": notification.priority,
        "status": notification.status,
        "attempts": notification.attempts,
        "last_error": notification.last_error,
        "created_at": notification.created_at.isoformat(),
        "sent_at": notification.sent_at.isoformat() if notification.sent_at else None,
    }


def _make_event(type_="order.created", *, audience=(), age=None, **data):
    services.events_record([events.EventSpec(type_, data, frozenset(user.pk for user in audience))])
    relayed()
    event = Event.objects.latest("id")
    if age is not None:
        Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - age)
    return event


# ---- each change writes its event ------------------------------------------------------


def test_order_create_records_order_created_in_its_transaction(user, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order = OrderFactory(created_by=user, order_number="ORD-RT-1", total_amount=Decimal("10.50"))
        assert published == []  # not before the commit

    event = _event(events.ORDER_CREATED)
    assert event.data == _order_data(order)
    assert event.data["status"] == "pending" and event.data["total_amount"] == "10.50"
    assert event.data["order_number"] == "ORD-RT-1"
    # The order's notifications come after it, in the same log.
    assert list(Event.objects.values_list("type", flat=True)) == [
        events.ORDER_CREATED,
        *[events.NOTIFICATION_CREATED] * 3,  # email, Telegram and the placer's inbox
    ]
    # Published after commit, with the audience besides staff, the frame made once.
    live = [live for batch in published for live in batch]
    assert [e.id for e in live] == list(Event.objects.values_list("pk", flat=True))
    first = live[0]
    assert (first.id, first.type, first.order_id, first.audience) == (
        event.pk,
        events.ORDER_CREATED,
        order.pk,
        [user.pk],
    )
    assert json.loads(first.text) == event.envelope()
    assert set(event.envelope()) == {"id", "type", "ts", "data"}


def test_a_rolled_back_order_leaves_no_event_and_publishes_nothing(
    user, published, monkeypatch, django_capture_on_commit_callbacks
):
    def fail(**kwargs):
        raise RuntimeError("after the event was written")

    # Fails after events_record ran inside order_create's transaction.
    monkeypatch.setattr(order_services, "notifications_for_order_event", fail)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            OrderFactory(created_by=user)

    assert not Order.objects.exists()
    assert not Event.objects.exists()
    assert published == []
    assert callbacks == []


def test_an_outer_rollback_takes_the_event_with_it(user, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            OrderFactory(created_by=user)
            assert PendingEvent.objects.filter(type=events.ORDER_CREATED).count() == 1  # written in the transaction
            raise RuntimeError

    relayed()
    assert not Event.objects.exists() and not PendingEvent.objects.exists()
    assert published == []


def test_order_update_records_the_changes(user, staff):
    order = OrderFactory(created_by=user)
    old_tracking = order.tracking_number

    order_services.order_update(
        order=order, by=staff, tracking_number="TRKNEW12345", notes="leave at door", total_amount=Decimal("200.00")
    )

    event = _event(events.ORDER_UPDATED)
    assert event.data == {
        **_order_data(order),
        "changes": {
            "tracking_number": [old_tracking, "TRKNEW12345"],
            "notes": ["", "leave at door"],
            "total_amount": ["149.99", "200.00"],
        },
    }
    assert event.data["total_amount"] == "200.00"


def test_order_update_that_changes_nothing_records_nothing(user, staff):
    order = OrderFactory(created_by=user, notes="same")
    before = Event.objects.count()

    order_services.order_update(order=order, by=staff, notes="same")

    assert Event.objects.count() == before


def test_order_status_change_records_old_and_new_status(user, staff):
    order = OrderFactory(created_by=user)

    order_services.order_change_status(order=order, status="confirmed", by=staff)

    event = _event(events.ORDER_STATUS_CHANGED)
    assert event.data == {**_order_data(order), "old_status": "pending", "new_status": "confirmed"}
    assert event.data["status"] == "confirmed"


def test_order_delete_records_order_deleted_for_who_could_see_it(user, staff):
    order = OrderFactory(created_by=user, order_number="ORD-GONE")
    order_pk = order.pk

    order_services.order_delete(order=order, by=staff)

    assert not Order.objects.filter(pk=order_pk).exists()
    event = _event(events.ORDER_DELETED)
    assert event.data == {"order_id": order_pk, "order_number": "ORD-GONE"}
    assert _audience(event) == {user.pk}


def test_customer_update_records_the_names_of_what_changed(user):
    customer = CustomerFactory(created_by=user, name="Old", phone="+14155550123")

    order_services.customer_update(customer=customer, by=user, name="New", phone="+14155550123", city="Pune")

    event = _event(events.CUSTOMER_UPDATED)
    assert event.data == {
        "customer_id": customer.pk,
        "name": "New",
        "email": customer.email,
        "changed": ["city", "name"],
    }


def test_customer_update_that_changes_nothing_records_nothing(user):
    customer = CustomerFactory(created_by=user, name="Same")

    order_services.customer_update(customer=customer, by=user, name="Same")

    assert not Event.objects.exists()


def test_notification_send_records_notification_created(user):
    notification, _ = notify_services.notification_send(
        sender=user, channel="email", recipient="ann@example.com", title="Hi", message="Hello", priority="high"
    )

    event = _event(events.NOTIFICATION_CREATED)
    # The event is of the row as written, before the enqueue on commit.
    assert event.data == {**_notification_data(notification), "status": "pending"}
    assert event.data["priority"] == "high" and event.data["order_id"] is None
    assert _audience(event) == {user.pk}


@pytest.mark.parametrize(
    ("reply_rcpt", "status"),
    [(None, "sent"), ("550 5.1.1 no such user", "failed"), ("451 try again later", "pending")],
)
def test_a_delivery_outcome_records_notification_status_changed(user, smtp_sink, reply_rcpt, status):
    smtp_sink.reply_rcpt = reply_rcpt
    notification, _ = notify_services.notification_send(
        sender=user, channel="email", recipient="ann@example.com", title="Hi", message="Hello"
    )

    notify_services.notifications_deliver(notification_ids=[notification.pk])

    event = _event(events.NOTIFICATION_STATUS_CHANGED)
    data = _notification_data(notification)
    assert data["status"] == status
    assert event.data == {**data, "old_status": "sending"}
    assert event.data["attempts"] == 1
    assert (event.data["sent_at"] is not None) == (status == "sent")
    if reply_rcpt:
        assert reply_rcpt.split(" ")[0] in event.data["last_error"]
    assert _audience(event) == {user.pk}


def test_notification_retry_records_the_way_back_from_failed(user, staff, smtp_sink):
    smtp_sink.reply_rcpt = "550 5.1.1 no such user"
    notification, _ = notify_services.notification_send(
        sender=user, channel="email", recipient="ann@example.com", title="Hi", message="Hello"
    )
    notify_services.notifications_deliver(notification_ids=[notification.pk])
    relayed()
    Event.objects.all().delete()

    notify_services.notification_retry(notification=notification, by=staff)

    event = _event(events.NOTIFICATION_STATUS_CHANGED)
    assert event.data["old_status"] == "failed" and event.data["status"] == "pending"


# ---- the audience follows the REST rules ------------------------------------------------


def _assert_audience_matches_rest(event, visible_to, subject, users):
    audience = _audience(event)
    for someone in users:
        expected = visible_to(user=someone).filter(pk=subject.pk).exists()
        if someone.is_staff:
            assert expected  # through the staff group, whoever the audience is
            continue
        assert (someone.pk in audience) == expected, (event.type, someone.username)


def test_audience_of_an_order_is_its_creator_and_its_customers_owner(staff):
    """An email match widens nothing: the record someone else made with the
    buyer's email is not the buyer's, and its creator sees none of the buyer's orders."""
    squatter, other = UserFactory(), UserFactory()
    squatted = CustomerFactory(created_by=squatter, email="ann@example.com")
    buyer = UserFactory(email="ANN@Example.com")
    order = OrderFactory(created_by=buyer)
    assert order.customer != squatted and order.customer.owner == buyer

    created = _event(events.ORDER_CREATED)
    assert _audience(created) == {buyer.pk}
    everyone = [squatter, buyer, other, staff]
    _assert_audience_matches_rest(created, order_list, order, everyone)

    # Staff hand the buyer's record to another account (in the admin): from then
    # on the buyer sees the order they placed, the new owner the record and its orders.
    new_owner = UserFactory(email="bob@example.com")
    everyone.append(new_owner)
    customer = order.customer
    customer.owner = new_owner
    customer.save()
    order_services.customer_update(customer=customer, by=staff, name="Bob")
    updated = _event(events.CUSTOMER_UPDATED)
    assert _audience(updated) == {new_owner.pk}
    _assert_audience_matches_rest(updated, customer_list, customer, everyone)

    order_services.order_change_status(order=order, status="confirmed", by=staff)
    changed = _event(events.ORDER_STATUS_CHANGED)
    assert _audience(changed) == {buyer.pk, new_owner.pk}
    _assert_audience_matches_rest(changed, order_list, order, everyone)

    # Staff see everything without being in the audience of what they did not send.
    assert not Event.objects.exclude(type__startswith="notification.").filter(audience=staff).exists()
    assert not Event.objects.filter(audience=other).exists()


def test_audience_of_order_notifications_follows_the_order(staff):
    squatter, other = UserFactory(), UserFactory()
    CustomerFactory(created_by=squatter, email="ann@example.com")
    buyer = UserFactory(email="ann@example.com")
    order = OrderFactory(created_by=buyer)

    order_services.order_change_status(order=order, status="confirmed", by=staff)

    relayed()
    everyone = [squatter, buyer, other, staff]
    notifications = Notification.objects.filter(order=order)
    assert notifications.count() == 6  # email, Telegram and the buyer's inbox, for the creation and the change
    for notification in notifications:
        event = Event.objects.get(type=events.NOTIFICATION_CREATED, data__notification_id=notification.pk)
        _assert_audience_matches_rest(event, notification_list, notification, everyone)
        expected = {buyer.pk} | ({staff.pk} if notification.sender == staff else set())
        assert _audience(event) == expected


def test_audience_of_a_manual_notification_is_its_sender(user, other_user):
    notification, _ = notify_services.notification_send(
        sender=user, channel="email", recipient=other_user.email, title="Hi", message="Hello"
    )

    event = _event(events.NOTIFICATION_CREATED)
    assert _audience(event) == {user.pk}
    _assert_audience_matches_rest(event, notification_list, notification, [user, other_user])


def test_events_recorded_together_get_each_the_audience_their_caller_gave(staff):
    first, second = UserFactory(), UserFactory()
    one, two = OrderFactory(created_by=first), OrderFactory(created_by=second)
    relayed()
    Event.objects.all().delete()

    pending = services.events_record(
        [
            events.order_created(one, audience={first.pk}),
            events.order_created(two, audience={first.pk, second.pk}),
            events.order_deleted(one, audience=set()),
        ]
    )

    assert [e.type for e in pending] == [events.ORDER_CREATED, events.ORDER_CREATED, events.ORDER_DELETED]
    relayed()
    recorded = list(Event.objects.all())
    assert [e.type for e in recorded] == [events.ORDER_CREATED, events.ORDER_CREATED, events.ORDER_DELETED]
    assert [_audience(e) for e in recorded] == [{first.pk}, {first.pk, second.pk}, set()]
    assert services.events_record([]) == []


# ---- reading the log -------------------------------------------------------------------


def test_events_after_returns_in_id_order_only_what_the_user_may_see(user, other_user, staff):
    mine = _make_event(audience=[user])
    theirs = _make_event(audience=[other_user])
    shared = _make_event(audience=[user, other_user])
    nobodys = _make_event()
    also_mine = _make_event(audience=[user])

    assert selectors.events_after(user=user, after=0) == [mine, shared, also_mine]
    assert selectors.events_after(user=user, after=mine.pk) == [shared, also_mine]
    assert selectors.events_after(user=user, after=also_mine.pk) == []
    assert selectors.events_after(user=user, after=0, limit=2) == [mine, shared]
    assert [e.pk for e in selectors.events_after(user=other_user, after=0)] == [theirs.pk, shared.pk]
    everything = selectors.events_after(user=staff, after=0)
    assert [e.pk for e in everything] == sorted(Event.objects.values_list("pk", flat=True))
    assert nobodys in everything


def test_events_resumable_from_is_false_once_older_events_were_pruned(settings):
    settings.REALTIME_EVENT_RETENTION_DAYS = 7
    assert selectors.events_resumable_from(0) is True  # an empty log, nothing pruned
    first = _make_event(age=timedelta(days=8))
    second = _make_event()
    third = _make_event()

    assert selectors.events_resumable_from(0) is True  # from the start: nothing is gone yet
    assert selectors.events_resumable_from(first.pk - 1) is True
    assert selectors.events_resumable_from(second.pk) is True
    assert selectors.events_resumable_from(third.pk) is True
    assert selectors.events_resumable_from(third.pk + 1) is False  # beyond the newest: another log

    assert services.events_prune() == 1

    assert selectors.events_resumable_from(0) is False
    assert selectors.events_resumable_from(first.pk - 1) is False  # `first` is gone
    assert selectors.events_resumable_from(first.pk) is True
    assert selectors.events_resumable_from(third.pk) is True

    # Pruning goes by age, not by what is left: an emptied log stays behind its mark.
    Event.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert services.events_prune() == 2
    assert selectors.events_resumable_from(second.pk - 1) is False
    assert selectors.events_resumable_from(0) is False


def test_the_position_is_the_newest_id_handed_out_and_resumable(settings, user_client):
    settings.REALTIME_EVENT_RETENTION_DAYS = 7
    assert selectors.events_position() == 0
    _make_event(age=timedelta(days=8))
    newest = _make_event(age=timedelta(days=8))

    assert selectors.events_position() == newest.pk
    assert user_client.post(TICKET_URL).json()["last_event_id"] == newest.pk
    assert services.events_prune() == 2
    # An emptied log keeps its place: a client that got it resumes, it is not told to resync.
    assert selectors.events_position() == newest.pk
    assert selectors.events_resumable_from(selectors.events_position()) is True


def test_events_prune_deletes_only_events_older_than_the_retention(settings, user, other_user):
    settings.REALTIME_EVENT_RETENTION_DAYS = 7
    old = _make_event(audience=[user, other_user], age=timedelta(days=8))
    just_old = _make_event(audience=[user], age=timedelta(days=7, minutes=1))
    just_young = _make_event(audience=[user], age=timedelta(days=6, hours=23))
    new = _make_event(audience=[user])

    assert services.events_prune() == 2  # events, not their audience rows

    assert list(Event.objects.all()) == [just_young, new]
    assert PruneMark.objects.get().pruned_through == just_old.pk
    assert not Event.audience.through.objects.filter(event_id__in=[old.pk, just_old.pk]).exists()
    assert services.events_prune() == 0


def test_events_prune_takes_fractional_days(settings):
    settings.REALTIME_EVENT_RETENTION_DAYS = 0.5
    _make_event(age=timedelta(hours=13))
    kept = _make_event(age=timedelta(hours=11))

    assert services.events_prune() == 1
    assert list(Event.objects.all()) == [kept]


# ---- tickets ---------------------------------------------------------------------------


def test_ticket_api_issues_a_ticket_that_works_once(user, user_client):
    r = user_client.post(TICKET_URL)

    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == {"ticket", "expires_in", "last_event_id"}
    assert body["expires_in"] == services.TICKET_TTL_SECONDS == 30
    assert body["last_event_id"] == 0  # nothing in the log yet
    assert len(body["ticket"]) >= 40
    credential = services.ticket_redeem(body["ticket"])
    token = AuthToken.objects.get(user=user)
    assert credential == services.Credential(user, token=token.digest, expires_at=token.expiry)
    assert services.ticket_redeem(body["ticket"]) is None


def test_ticket_api_gives_every_call_a_new_ticket(user_client):
    tickets = {user_client.post(TICKET_URL).json()["ticket"] for _ in range(3)}
    assert len(tickets) == 3


def test_ticket_api_needs_authentication(anon_client):
    r = anon_client.post(TICKET_URL)

    assert r.status_code == 401
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "not_authenticated"


def test_ticket_api_refuses_a_bad_token(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    r = anon_client.post(TICKET_URL)

    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_failed"


def test_an_unknown_ticket_redeems_nothing(user):
    services.ticket_issue(user=user)
    assert services.ticket_redeem("not-a-ticket") is None
    assert services.ticket_redeem("") is None


def test_a_ticket_is_stored_hashed(user):
    ticket = services.ticket_issue(user=user)
    assert cache.get("hub:ws-ticket:" + ticket) is None
    assert cache.get(services._ticket_key(ticket))["user"] == user.pk


def test_a_ticket_of_a_deactivated_user_redeems_nothing(user):
    ticket = services.ticket_issue(user=user)
    user.is_active = False
    user.save()

    assert services.ticket_redeem(ticket) is None


def test_a_ticket_lives_thirty_seconds(user, monkeypatch):
    ticket = services.ticket_issue(user=user)
    backend = caches["default"]
    key = backend.make_and_validate_key(services._ticket_key(ticket))
    if hasattr(backend, "_expire_info"):  # local memory: move its clock on
        assert 29 < backend._expire_info[key] - time.time() <= 30
        from django.core.cache.backends import locmem

        real_time = time.time
        monkeypatch.setattr(locmem.time, "time", lambda: real_time() + 29)
        assert cache.get(services._ticket_key(ticket))["user"] == user.pk
        monkeypatch.setattr(locmem.time, "time", lambda: real_time() + 31)
    else:  # Redis keeps the time to live; the key goes when it is up
        ttl = backend._cache.get_client(key).ttl(key)
        assert 28 <= ttl <= 30
        cache.delete(services._ticket_key(ticket))

    assert services.ticket_redeem(ticket) is None


def test_a_ticket_redeems_nothing_once_its_time_is_up(user, monkeypatch):
    monkeypatch.setattr(services, "TICKET_TTL_SECONDS", 1)
    ticket = services.ticket_issue(user=user)
    time.sleep(1.1)

    assert services.ticket_redeem(ticket) is None
