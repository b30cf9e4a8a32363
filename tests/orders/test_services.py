import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.exceptions import ApplicationError, Conflict
from orders import services
from orders.models import (
    Customer,
    NotificationPreference,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    order_status_next,
)
from tests.factories import CustomerFactory, OrderFactory, UserFactory

# The state machine as DESIGN states it, written out independently of the code.
EXPECTED_NEXT = {
    "pending": ["confirmed", "processing", "shipped", "delivered", "cancelled"],
    "confirmed": ["processing", "shipped", "delivered", "cancelled"],
    "processing": ["shipped", "delivered", "cancelled"],
    "shipped": ["delivered"],
    "delivered": [],
    "cancelled": [],
}
ALL_STATUSES = list(EXPECTED_NEXT)
ALLOWED_MOVES = [(old, new) for old, nexts in EXPECTED_NEXT.items() for new in nexts]
REFUSED_MOVES = [
    (old, new) for old in ALL_STATUSES for new in ALL_STATUSES if new != old and new not in EXPECTED_NEXT[old]
]

CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _set_status(order, status):
    """Put an order in `status` without going through the state machine."""
    Order.objects.filter(pk=order.pk).update(status=status)
    order.refresh_from_db()
    return order


def _error_keys(excinfo):
    return set(excinfo.value.message_dict)


# --- order_status_next -------------------------------------------------------


@pytest.mark.parametrize("status, expected", list(EXPECTED_NEXT.items()))
def test_order_status_next_matches_the_flow(status, expected):
    assert [str(s) for s in order_status_next(status)] == expected


def test_order_status_next_pending_reaches_every_later_status_and_cancelled():
    assert order_status_next(OrderStatus.PENDING) == [
        OrderStatus.CONFIRMED,
        OrderStatus.PROCESSING,
        OrderStatus.SHIPPED,
        OrderStatus.DELIVERED,
        OrderStatus.CANCELLED,
    ]


def test_order_status_next_shipped_can_only_be_delivered():
    assert order_status_next(OrderStatus.SHIPPED) == [OrderStatus.DELIVERED]


@pytest.mark.parametrize("status", [OrderStatus.DELIVERED, OrderStatus.CANCELLED, "bogus"])
def test_order_status_next_final_or_unknown_has_no_moves(status):
    assert order_status_next(status) == []


# --- customer_create ---------------------------------------------------------


def test_customer_create_saves_fields_and_creator(user):
    customer = services.customer_create(
        by=user,
        name="John Doe",
        email="john.doe@example.com",
        phone="+1234567890",
        telegram_chat_id=123456789,
        address="123 Main St",
        city="New York",
        country="USA",
        postal_code="10001",
    )
    customer.refresh_from_db()
    assert Customer.objects.count() == 1
    assert customer.name == "John Doe"
    assert customer.email == "john.doe@example.com"
    assert customer.phone == "+1234567890"
    assert customer.telegram_chat_id == 123456789
    assert (customer.address, customer.city, customer.country, customer.postal_code) == (
        "123 Main St",
        "New York",
        "USA",
        "10001",
    )
    assert customer.created_by == user


def test_customer_create_creates_exactly_one_preferences_row_with_defaults(user):
    customer = services.customer_create(by=user, name="A", email="a@example.com")
    assert NotificationPreference.objects.count() == 1
    prefs = NotificationPreference.objects.get()
    assert prefs.customer_id == customer.pk
    assert prefs.email_enabled is True
    assert prefs.telegram_enabled is True
    assert prefs.order_updates is True
    assert prefs.promotional is False


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@example.com", "Taken@Example.COM"])
def test_customer_create_duplicate_email_case_insensitive_is_refused(user, email):
    services.customer_create(by=user, name="First", email="taken@example.com")
    with pytest.raises(ValidationError) as excinfo:
        services.customer_create(by=user, name="Second", email=email)
    assert _error_keys(excinfo) == {"email"}
    assert Customer.objects.count() == 1
    assert NotificationPreference.objects.count() == 1


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "+0123"}, "phone"),
        ({"phone": "+1 415 555 0123"}, "phone"),
        ({"telegram_chat_id": 0}, "telegram_chat_id"),
        ({"telegram_chat_id": 2**52}, "telegram_chat_id"),
        ({"telegram_chat_id": -(2**52)}, "telegram_chat_id"),
        ({"name": ""}, "name"),
    ],
)
def test_customer_create_invalid_field_is_refused_by_full_clean(user, fields, key):
    kwargs = {"name": "Someone", "email": "someone@example.com", **fields}
    with pytest.raises(ValidationError) as excinfo:
        services.customer_create(by=user, **kwargs)
    assert key in _error_keys(excinfo)
    assert Customer.objects.count() == 0
    assert NotificationPreference.objects.count() == 0


@pytest.mark.parametrize("chat_id", [-1001234567890, 1, 2**52 - 1])
def test_customer_create_accepts_valid_telegram_chat_ids(user, chat_id):
    customer = services.customer_create(by=user, name="G", email="g@example.com", telegram_chat_id=chat_id)
    customer.refresh_from_db()
    assert customer.telegram_chat_id == chat_id


def test_customer_create_unknown_field_is_a_type_error(user):
    with pytest.raises(TypeError):
        services.customer_create(by=user, name="A", email="a@example.com", nickname="x")
    assert Customer.objects.count() == 0


# --- customer_update ---------------------------------------------------------


def test_customer_update_changes_given_fields_only(user):
    customer = CustomerFactory(created_by=user, name="Old", city="Paris")
    updated = services.customer_update(customer=customer, by=user, name="New", phone="+1987654321")
    customer.refresh_from_db()
    assert updated.pk == customer.pk
    assert customer.name == "New"
    assert customer.phone == "+1987654321"
    assert customer.city == "Paris"
    assert Customer.objects.count() == 1


def test_customer_update_duplicate_email_case_insensitive_is_refused(user):
    CustomerFactory(created_by=user, email="first@example.com")
    second = CustomerFactory(created_by=user, email="second@example.com")
    with pytest.raises(ValidationError) as excinfo:
        services.customer_update(customer=second, by=user, email="FIRST@example.com")
    assert _error_keys(excinfo) == {"email"}
    second.refresh_from_db()
    assert second.email == "second@example.com"


def test_customer_update_may_change_case_of_its_own_email(user):
    customer = CustomerFactory(created_by=user, email="me@example.com")
    services.customer_update(customer=customer, by=user, email="ME@example.com")
    customer.refresh_from_db()
    assert customer.email == "ME@example.com"


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"phone": "12345"}, "phone"),
        ({"telegram_chat_id": 0}, "telegram_chat_id"),
        ({"email": "nope"}, "email"),
    ],
)
def test_customer_update_invalid_field_changes_nothing(user, fields, key):
    customer = CustomerFactory(created_by=user, phone="+14155550123", telegram_chat_id=42, email="c@example.com")
    with pytest.raises(ValidationError) as excinfo:
        services.customer_update(customer=customer, by=user, **fields)
    assert key in _error_keys(excinfo)
    customer.refresh_from_db()
    assert (customer.phone, customer.telegram_chat_id, customer.email) == ("+14155550123", 42, "c@example.com")


def test_customer_update_unknown_field_is_a_type_error(user):
    customer = CustomerFactory(created_by=user)
    with pytest.raises(TypeError):
        services.customer_update(customer=customer, by=user, created_by=None)


# --- customer_delete ---------------------------------------------------------


def test_customer_delete_removes_customer_and_preferences(user, staff):
    customer = CustomerFactory(created_by=user)
    other = CustomerFactory(created_by=user)
    services.customer_delete(customer=customer, by=staff)
    assert list(Customer.objects.all()) == [other]
    assert NotificationPreference.objects.count() == 1
    assert NotificationPreference.objects.get().customer_id == other.pk


def test_customer_delete_with_orders_is_a_conflict(user, staff):
    order = OrderFactory(created_by=user)
    with pytest.raises(Conflict) as excinfo:
        services.customer_delete(customer=order.customer, by=staff)
    assert excinfo.value.code == "customer_has_orders"
    assert excinfo.value.status_code == 409
    assert Customer.objects.count() == 1
    assert Order.objects.count() == 1


# --- preferences_update ------------------------------------------------------


def test_preferences_update_changes_given_flags_only(user):
    customer = CustomerFactory(created_by=user)
    prefs = services.preferences_update(customer=customer, by=user, promotional=True, email_enabled=False)
    assert prefs.customer_id == customer.pk
    stored = NotificationPreference.objects.get(customer=customer)
    assert (stored.email_enabled, stored.telegram_enabled, stored.order_updates, stored.promotional) == (
        False,
        True,
        True,
        True,
    )
    assert NotificationPreference.objects.count() == 1


def test_preferences_update_creates_missing_row(user):
    customer = CustomerFactory(created_by=user)
    NotificationPreference.objects.filter(customer=customer).delete()
    customer = Customer.objects.get(pk=customer.pk)
    services.preferences_update(customer=customer, by=user, telegram_enabled=False)
    assert NotificationPreference.objects.count() == 1
    stored = NotificationPreference.objects.get(customer=customer)
    assert (stored.email_enabled, stored.telegram_enabled, stored.order_updates, stored.promotional) == (
        True,
        False,
        True,
        False,
    )


def test_preferences_update_unknown_field_is_a_type_error(user):
    customer = CustomerFactory(created_by=user)
    with pytest.raises(TypeError):
        services.preferences_update(customer=customer, by=user, sms_enabled=True)
    assert NotificationPreference.objects.get(customer=customer).promotional is False


# --- order_create ------------------------------------------------------------


def test_order_create_creates_customer_from_users_name_and_email(db):
    user = UserFactory(first_name="Grace", last_name="Hopper", email="grace@example.com")
    order = services.order_create(by=user, total_amount=Decimal("10.00"))
    assert Customer.objects.count() == 1
    customer = Customer.objects.get()
    assert order.customer == customer
    assert customer.name == "Grace Hopper"
    assert customer.email == "grace@example.com"
    assert customer.created_by == user
    assert NotificationPreference.objects.filter(customer=customer).count() == 1


def test_order_create_customer_name_falls_back_to_username(db):
    user = UserFactory(username="nameless", first_name="", last_name="", email="nameless@example.com")
    order = services.order_create(by=user, total_amount=Decimal("10.00"))
    assert order.customer.name == "nameless"


def test_order_create_never_uses_a_record_someone_else_made_with_my_email(user, staff):
    squatted = CustomerFactory(created_by=staff, email=user.email.upper(), name="Made by staff")
    order = services.order_create(by=user, total_amount=Decimal("10.00"))
    assert order.customer != squatted
    assert (order.customer.owner, order.customer.created_by, order.customer.email) == (user, user, user.email)
    squatted.refresh_from_db()
    assert squatted.owner is None


def test_order_create_links_the_record_i_made_with_my_email(user):
    mine = CustomerFactory(created_by=user, email=user.email.upper())
    order = services.order_create(by=user, total_amount=Decimal("10.00"))
    assert order.customer == mine
    mine.refresh_from_db()
    assert mine.owner == user
    assert Customer.objects.count() == 1


def test_order_create_second_order_reuses_the_same_customer(user):
    first = services.order_create(by=user, total_amount=Decimal("10.00"))
    second = services.order_create(by=user, total_amount=Decimal("20.00"))
    assert first.customer_id == second.customer_id
    assert Customer.objects.count() == 1


def test_order_create_user_without_email_is_refused(db):
    user = UserFactory(email="")
    with pytest.raises(ApplicationError) as excinfo:
        services.order_create(by=user, total_amount=Decimal("10.00"))
    assert excinfo.value.code == "no_customer_email"
    assert excinfo.value.status_code == 400
    assert Order.objects.count() == 0
    assert Customer.objects.count() == 0
    assert OrderEvent.objects.count() == 0


def test_order_create_saves_fields_and_starts_pending(user):
    order = services.order_create(
        by=user,
        order_number="ORD-001",
        total_amount=Decimal("149.99"),
        currency="USD",
        shipping_address="123 Main St, Mumbai, Maharashtra 400001",
        shipping_method="express",
        notes="Urgent delivery required",
    )
    order.refresh_from_db()
    assert order.order_number == "ORD-001"
    assert order.total_amount == Decimal("149.99")
    assert order.currency == "USD"
    assert order.shipping_address == "123 Main St, Mumbai, Maharashtra 400001"
    assert order.shipping_method == "express"
    assert order.notes == "Urgent delivery required"
    assert order.status == "pending"
    assert order.created_by == user


def test_order_create_defaults_currency_and_shipping_method(user):
    order = services.order_create(by=user, total_amount=Decimal("5.00"))
    order.refresh_from_db()
    assert order.currency == "INR"
    assert order.shipping_method == "standard"


def test_order_create_generates_well_formed_unique_numbers(user):
    today = timezone.now().strftime("%Y%m%d")
    orders = [services.order_create(by=user, total_amount=Decimal("1.00")) for _ in range(10)]
    order_numbers = [o.order_number for o in orders]
    tracking_numbers = [o.tracking_number for o in orders]
    for number in order_numbers:
        assert re.fullmatch(rf"ORD-{today}-[{CODE_CHARS}]{{6}}", number), number
    for number in tracking_numbers:
        assert re.fullmatch(rf"TRK[{CODE_CHARS}]{{12}}", number), number
    assert len(set(order_numbers)) == 10
    assert len(set(tracking_numbers)) == 10


def test_order_create_given_order_number_still_gets_generated_tracking_number(user):
    order = services.order_create(by=user, order_number="ORD-001", total_amount=Decimal("1.00"))
    assert re.fullmatch(rf"TRK[{CODE_CHARS}]{{12}}", order.tracking_number)


def test_order_create_duplicate_order_number_is_refused(user, other_user):
    services.order_create(by=user, order_number="ORD-001", total_amount=Decimal("1.00"))
    with pytest.raises(ValidationError) as excinfo:
        services.order_create(by=other_user, order_number="ORD-001", total_amount=Decimal("2.00"))
    assert _error_keys(excinfo) == {"order_number"}
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 1
    # The refused order's customer was rolled back with it.
    assert Customer.objects.count() == 1


def test_order_create_generated_code_collision_is_a_validation_error(user, monkeypatch):
    services.order_create(by=user, total_amount=Decimal("1.00"))
    existing = Order.objects.get()
    monkeypatch.setattr(services, "_new_order_number", lambda: existing.order_number)
    monkeypatch.setattr(services, "_new_tracking_number", lambda: existing.tracking_number)
    with pytest.raises(ValidationError) as excinfo:
        services.order_create(by=user, total_amount=Decimal("2.00"))
    assert _error_keys(excinfo) == {"order_number", "tracking_number"}
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"total_amount": Decimal("0")}, "total_amount"),
        ({"total_amount": Decimal("-1.00")}, "total_amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"shipping_method": "teleport"}, "shipping_method"),
        ({"order_number": "bad number!"}, "order_number"),
    ],
)
def test_order_create_invalid_field_is_refused_and_leaves_nothing(user, fields, key):
    kwargs = {"total_amount": Decimal("10.00"), **fields}
    with pytest.raises(ValidationError) as excinfo:
        services.order_create(by=user, **kwargs)
    assert key in _error_keys(excinfo)
    assert Order.objects.count() == 0
    assert OrderEvent.objects.count() == 0
    assert Customer.objects.count() == 0


def test_order_create_records_exactly_one_created_event(user):
    order = services.order_create(by=user, total_amount=Decimal("10.00"))
    assert OrderEvent.objects.count() == 1
    event = OrderEvent.objects.get()
    assert event.order == order
    assert event.kind == OrderEventKind.CREATED
    assert event.from_status == ""
    assert event.to_status == "pending"
    assert event.changes == {}
    assert event.actor == user


# --- order_update ------------------------------------------------------------


def test_order_update_records_one_updated_event_with_changes(user, staff):
    order = OrderFactory(created_by=user, total_amount=Decimal("149.99"))
    updated = services.order_update(
        order=order, by=staff, notes="Leave at door", total_amount=Decimal("200.00"), currency="INR"
    )
    updated.refresh_from_db()
    assert updated.notes == "Leave at door"
    assert updated.total_amount == Decimal("200.00")
    assert OrderEvent.objects.count() == 2
    event = OrderEvent.objects.filter(kind=OrderEventKind.UPDATED).get()
    # currency was sent unchanged, so it is not in the changes.
    assert event.changes == {"notes": ["", "Leave at door"], "total_amount": ["149.99", "200.00"]}
    assert event.actor == staff
    assert event.order_id == order.pk


def test_order_update_without_real_changes_records_nothing(user, staff):
    order = OrderFactory(created_by=user, total_amount=Decimal("149.99"), notes="same")
    before = Order.objects.get(pk=order.pk).updated_at
    services.order_update(
        order=order, by=staff, notes="same", total_amount=Decimal("149.99"), tracking_number=order.tracking_number
    )
    assert OrderEvent.objects.count() == 1
    assert Order.objects.get(pk=order.pk).updated_at == before


def test_order_update_status_goes_through_change_status_as_separate_event(user, staff):
    order = OrderFactory(created_by=user)
    _set_status(order, "confirmed")
    updated = services.order_update(
        order=order, by=staff, status="shipped", tracking_number="TRK123456789", notes="Shipped via express"
    )
    assert updated.status == "shipped"
    order.refresh_from_db()
    assert order.status == "shipped"
    assert order.tracking_number == "TRK123456789"
    events = list(OrderEvent.objects.order_by("created_at", "id"))
    assert [e.kind for e in events] == ["created", "updated", "status_changed"]
    assert set(events[1].changes) == {"tracking_number", "notes"}
    assert "status" not in events[1].changes
    assert (events[2].from_status, events[2].to_status, events[2].actor) == ("confirmed", "shipped", staff)


def test_order_update_status_only_records_only_a_status_event(user, staff):
    order = OrderFactory(created_by=user)
    services.order_update(order=order, by=staff, status="confirmed")
    assert OrderEvent.objects.count() == 2
    assert OrderEvent.objects.filter(kind=OrderEventKind.UPDATED).count() == 0
    assert OrderEvent.objects.filter(kind=OrderEventKind.STATUS_CHANGED).count() == 1
    order.refresh_from_db()
    assert order.status == "confirmed"


def test_order_update_same_status_records_nothing(user, staff):
    order = OrderFactory(created_by=user)
    services.order_update(order=order, by=staff, status="pending")
    assert OrderEvent.objects.count() == 1


def test_order_update_refused_status_rolls_back_field_changes(user, staff):
    order = OrderFactory(created_by=user, notes="before")
    _set_status(order, "delivered")
    with pytest.raises(Conflict) as excinfo:
        services.order_update(order=order, by=staff, notes="after", status="pending")
    assert excinfo.value.code == "invalid_transition"
    order.refresh_from_db()
    assert order.notes == "before"
    assert order.status == "delivered"
    assert OrderEvent.objects.count() == 1


def test_order_update_duplicate_tracking_number_is_refused(user, staff):
    first = OrderFactory(created_by=user)
    second = OrderFactory(created_by=user)
    original = second.tracking_number
    with pytest.raises(ValidationError) as excinfo:
        services.order_update(order=second, by=staff, tracking_number=first.tracking_number)
    assert _error_keys(excinfo) == {"tracking_number"}
    second.refresh_from_db()
    assert second.tracking_number == original
    assert OrderEvent.objects.count() == 2


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"currency": "XYZ"}, "currency"),
        ({"total_amount": Decimal("0")}, "total_amount"),
        ({"shipping_method": "teleport"}, "shipping_method"),
        ({"tracking_number": "has space"}, "tracking_number"),
    ],
)
def test_order_update_invalid_field_changes_nothing(user, staff, fields, key):
    order = OrderFactory(created_by=user, total_amount=Decimal("149.99"))
    with pytest.raises(ValidationError) as excinfo:
        services.order_update(order=order, by=staff, **fields)
    assert key in _error_keys(excinfo)
    stored = Order.objects.get(pk=order.pk)
    assert (stored.currency, stored.total_amount, stored.shipping_method, stored.tracking_number) == (
        "INR",
        Decimal("149.99"),
        "standard",
        order.tracking_number,
    )
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize("field", ["order_number", "customer", "created_by"])
def test_order_update_unknown_field_is_a_type_error(user, staff, field):
    order = OrderFactory(created_by=user)
    with pytest.raises(TypeError):
        services.order_update(order=order, by=staff, **{field: "x"})
    assert OrderEvent.objects.count() == 1


# --- order_change_status -----------------------------------------------------


@pytest.mark.parametrize("old, new", ALLOWED_MOVES)
def test_order_change_status_allowed_move(user, staff, old, new):
    order = _set_status(OrderFactory(created_by=user), old)
    result = services.order_change_status(order=order, status=new, by=staff)
    assert result.status == new
    order.refresh_from_db()
    assert order.status == new
    assert OrderEvent.objects.count() == 2
    event = OrderEvent.objects.get(kind=OrderEventKind.STATUS_CHANGED)
    assert (event.from_status, event.to_status, event.actor, event.order_id) == (old, new, staff, order.pk)
    assert event.changes == {}


@pytest.mark.parametrize("old, new", REFUSED_MOVES)
def test_order_change_status_refused_move(user, staff, old, new):
    order = _set_status(OrderFactory(created_by=user), old)
    with pytest.raises(Conflict) as excinfo:
        services.order_change_status(order=order, status=new, by=staff)
    error = excinfo.value
    assert error.code == "invalid_transition"
    assert error.status_code == 409
    assert [str(s) for s in error.extra["allowed"]] == EXPECTED_NEXT[old]
    assert error.extra["current"] == old
    assert error.extra["requested"] == new
    order.refresh_from_db()
    assert order.status == old
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_order_change_status_same_status_is_a_no_op(user, staff, status):
    order = _set_status(OrderFactory(created_by=user), status)
    before = order.updated_at
    result = services.order_change_status(order=order, status=status, by=staff)
    assert result.status == status
    order.refresh_from_db()
    assert order.status == status
    assert order.updated_at == before
    assert OrderEvent.objects.count() == 1


def test_order_change_status_uses_current_row_not_stale_instance(user, staff):
    order = OrderFactory(created_by=user)
    stale = Order.objects.get(pk=order.pk)
    _set_status(order, "delivered")
    with pytest.raises(Conflict):
        services.order_change_status(order=stale, status="confirmed", by=staff)
    order.refresh_from_db()
    assert order.status == "delivered"


# --- order_delete ------------------------------------------------------------


def test_order_delete_removes_order_and_its_events_only(user, staff):
    doomed = OrderFactory(created_by=user)
    kept = OrderFactory(created_by=user)
    services.order_change_status(order=doomed, status="confirmed", by=staff)
    assert OrderEvent.objects.count() == 3
    services.order_delete(order=doomed, by=staff)
    assert list(Order.objects.all()) == [kept]
    assert OrderEvent.objects.count() == 1
    assert OrderEvent.objects.get().order_id == kept.pk
    assert Customer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_order_create_first_orders_placed_at_once_share_one_new_record():
    """Each in a transaction of its own, on a connection of its own, as
    concurrent requests are; they must neither deadlock nor make two records."""
    import threading

    from django.db import connection

    user = UserFactory()
    results, start = [], threading.Barrier(6)

    def place():
        try:
            start.wait()
            results.append(services.order_create(by=user, total_amount=Decimal("5.00")).customer_id)
        except Exception as exc:  # noqa: BLE001  (the test reports it)
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=place) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(results) == 6 and not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1
    assert Customer.objects.get().owner == user
