import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orders import services
from orders.models import Customer, Order, OrderEvent
from tests.conftest import client_for
from tests.factories import OrderFactory, UserFactory
from tests.helpers import SEED_ORDER, SEED_SHIP, assert_validation_error

LIST_URL = "/api/v1/orders/"

CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def detail_url(order_id):
    return f"{LIST_URL}{order_id}/"


def status_url(order_id):
    return f"{LIST_URL}{order_id}/status/"


def assert_not_found(response):
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


def assert_forbidden(response):
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "permission_denied"


def _ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def _set_status(order, status):
    Order.objects.filter(pk=order.pk).update(status=status)
    order.refresh_from_db()
    return order


def _set_created_at(order, when):
    Order.objects.filter(pk=order.pk).update(created_at=when)
    order.refresh_from_db()
    return order


# --- create ------------------------------------------------------------------


def test_order_create_seed_payload(user, user_client):
    response = user_client.post(LIST_URL, SEED_ORDER)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["order_number"] == "ORD-001"
    assert body["total_amount"] == "149.99"
    assert body["currency"] == "INR"
    assert body["shipping_address"] == "123 Main St, Mumbai, Maharashtra 400001"
    assert body["shipping_method"] == "standard"
    assert body["status"] == "pending"
    assert body["notes"] == "Urgent delivery required"
    assert body["next_statuses"] == ["confirmed", "processing", "shipped", "delivered", "cancelled"]
    assert re.fullmatch(rf"TRK[{CODE_CHARS}]{{12}}", body["tracking_number"])
    assert body["customer"]["email"] == user.email
    assert len(body["history"]) == 1
    created = body["history"][0]
    assert (created["kind"], created["from_status"], created["to_status"], created["actor"]) == (
        "created",
        "",
        "pending",
        user.username,
    )
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 1
    order = Order.objects.get()
    assert order.pk == body["id"]
    assert order.created_by == user
    assert order.total_amount == Decimal("149.99")


def test_order_create_makes_customer_from_user_once(user, user_client):
    assert user_client.post(LIST_URL, SEED_ORDER).status_code == 201
    assert user_client.post(LIST_URL, {"total_amount": "10.00"}).status_code == 201
    assert Customer.objects.count() == 1
    customer = Customer.objects.get()
    assert customer.email == user.email
    assert Order.objects.filter(customer=customer).count() == 2


def test_order_create_without_order_number_generates_one(user_client):
    payload = {k: v for k, v in SEED_ORDER.items() if k != "order_number"}
    response = user_client.post(LIST_URL, payload)
    assert response.status_code == 201, response.content
    number = response.json()["order_number"]
    assert re.fullmatch(rf"ORD-\d{{8}}-[{CODE_CHARS}]{{6}}", number)
    assert Order.objects.get().order_number == number


def test_order_create_minimal_payload_uses_defaults(user_client):
    response = user_client.post(LIST_URL, {"total_amount": "10"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["currency"] == "INR"
    assert body["shipping_method"] == "standard"
    assert body["status"] == "pending"
    assert body["total_amount"] == "10.00"
    assert Order.objects.get().currency == "INR"


def test_order_create_lowercase_currency_is_uppercased(user_client):
    response = user_client.post(LIST_URL, {**SEED_ORDER, "currency": "usd"})
    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "USD"
    assert Order.objects.get().currency == "USD"


@pytest.mark.parametrize(
    "override, field",
    [
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "USDD"}, "currency"),
        ({"total_amount": "0"}, "total_amount"),
        ({"total_amount": "-1"}, "total_amount"),
        ({"total_amount": "1.999"}, "total_amount"),
        ({"total_amount": "abc"}, "total_amount"),
        ({"total_amount": ""}, "total_amount"),
        ({"status": "confirmed"}, "status"),
        ({"status": "shipped"}, "status"),
        ({"status": "bogus"}, "status"),
        ({"shipping_method": "teleport"}, "shipping_method"),
        ({"order_number": "has space"}, "order_number"),
        ({"order_number": "-leading-dash"}, "order_number"),
    ],
)
def test_order_create_invalid_field_is_refused(user_client, override, field):
    response = user_client.post(LIST_URL, {**SEED_ORDER, **override})
    assert_validation_error(response, field)
    assert Order.objects.count() == 0
    assert OrderEvent.objects.count() == 0
    assert Customer.objects.count() == 0


def test_order_create_missing_total_amount_is_refused(user_client):
    payload = {k: v for k, v in SEED_ORDER.items() if k != "total_amount"}
    error = assert_validation_error(user_client.post(LIST_URL, payload), "total_amount")
    assert error["fields"]["total_amount"] == ["This field is required."]
    assert Order.objects.count() == 0


@pytest.mark.parametrize("field", ["tracking_number", "customer", "created_by"])
def test_order_create_read_only_or_unknown_field_is_refused(user_client, field):
    response = user_client.post(LIST_URL, {**SEED_ORDER, field: "TRK123456789"})
    error = assert_validation_error(response, field)
    assert error["fields"][field] == ["Unknown field."]
    assert Order.objects.count() == 0


def test_order_create_duplicate_order_number_is_refused(user_client, other_client):
    assert user_client.post(LIST_URL, SEED_ORDER).status_code == 201
    response = other_client.post(LIST_URL, SEED_ORDER)
    assert_validation_error(response, "order_number")
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 1


def test_order_create_user_without_email_is_refused(db):
    client = client_for(UserFactory(email=""))
    response = client.post(LIST_URL, SEED_ORDER)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_customer_email"
    assert Order.objects.count() == 0
    assert Customer.objects.count() == 0


def test_order_create_malformed_json_is_a_parse_error(user_client):
    response = user_client.post(LIST_URL, '{"total_amount": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert Order.objects.count() == 0


def test_order_create_unauthenticated_is_refused(db, anon_client):
    response = anon_client.post(LIST_URL, SEED_ORDER)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Order.objects.count() == 0


# --- access matrix: user vs staff --------------------------------------------


@pytest.mark.parametrize("who", ["user", "staff"])
def test_order_create_allowed_for_user_and_staff(request, who):
    client = request.getfixturevalue(f"{who}_client")
    account = request.getfixturevalue(who)
    response = client.post(LIST_URL, SEED_ORDER)
    assert response.status_code == 201, response.content
    assert Order.objects.get().created_by == account


@pytest.mark.parametrize("who", ["user", "staff"])
def test_order_list_and_retrieve_allowed_for_user_and_staff(request, user, who):
    client = request.getfixturevalue(f"{who}_client")
    order = OrderFactory(created_by=user)
    assert _ids(client.get(LIST_URL)) == [order.pk]
    response = client.get(detail_url(order.pk))
    assert response.status_code == 200
    assert response.json()["order_number"] == order.order_number


def test_order_put_seed_body_staff(user, staff, staff_client):
    order = OrderFactory(created_by=user, notes="Urgent delivery required")
    services.order_change_status(order=order, status="confirmed", by=staff)
    response = staff_client.put(detail_url(order.pk), SEED_SHIP)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "shipped"
    assert body["tracking_number"] == "TRK123456789"
    assert body["notes"] == "Package shipped via express delivery"
    assert body["next_statuses"] == ["delivered"]
    assert [e["kind"] for e in body["history"]] == ["created", "status_changed", "updated", "status_changed"]
    assert body["history"][2]["changes"] == {
        "tracking_number": [order.tracking_number, "TRK123456789"],
        "notes": ["Urgent delivery required", "Package shipped via express delivery"],
    }
    assert (body["history"][3]["from_status"], body["history"][3]["to_status"]) == ("confirmed", "shipped")
    order.refresh_from_db()
    assert (order.status, order.tracking_number) == ("shipped", "TRK123456789")
    assert OrderEvent.objects.count() == 4


def test_order_put_seed_body_user_is_forbidden(user, staff, user_client):
    order = OrderFactory(created_by=user)
    services.order_change_status(order=order, status="confirmed", by=staff)
    assert_forbidden(user_client.put(detail_url(order.pk), SEED_SHIP))
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert order.tracking_number != "TRK123456789"
    assert OrderEvent.objects.count() == 2


def test_order_patch_delivered_staff(user, staff, staff_client):
    order = _set_status(OrderFactory(created_by=user), "shipped")
    response = staff_client.patch(detail_url(order.pk), {"status": "delivered"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "delivered"
    assert response.json()["next_statuses"] == []
    order.refresh_from_db()
    assert order.status == "delivered"
    assert OrderEvent.objects.count() == 2
    event = OrderEvent.objects.get(kind="status_changed")
    assert (event.from_status, event.to_status, event.actor) == ("shipped", "delivered", staff)


def test_order_patch_delivered_user_is_forbidden(user, user_client):
    order = _set_status(OrderFactory(created_by=user), "shipped")
    assert_forbidden(user_client.patch(detail_url(order.pk), {"status": "delivered"}))
    order.refresh_from_db()
    assert order.status == "shipped"
    assert OrderEvent.objects.count() == 1


def test_order_change_status_endpoint_staff(user, staff, staff_client):
    order = OrderFactory(created_by=user)
    response = staff_client.put(status_url(order.pk), {"status": "confirmed"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "confirmed"
    assert [e["kind"] for e in body["history"]] == ["created", "status_changed"]
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert OrderEvent.objects.count() == 2


def test_order_change_status_endpoint_user_is_forbidden(user, user_client):
    order = OrderFactory(created_by=user)
    assert_forbidden(user_client.put(status_url(order.pk), {"status": "confirmed"}))
    order.refresh_from_db()
    assert order.status == "pending"
    assert OrderEvent.objects.count() == 1


def test_order_delete_staff(user, staff_client):
    order = OrderFactory(created_by=user)
    kept = OrderFactory(created_by=user)
    response = staff_client.delete(detail_url(order.pk))
    assert response.status_code == 204
    assert list(Order.objects.all()) == [kept]
    assert OrderEvent.objects.count() == 1
    assert Customer.objects.count() == 1


def test_order_delete_user_is_forbidden(user, user_client):
    order = OrderFactory(created_by=user)
    assert_forbidden(user_client.delete(detail_url(order.pk)))
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize(
    "method, url, payload",
    [
        ("put", detail_url, {"notes": "x"}),
        ("patch", detail_url, {"notes": "x"}),
        ("put", status_url, {"status": "confirmed"}),
        ("delete", detail_url, None),
    ],
)
def test_order_staff_actions_forbidden_for_user_even_on_unknown_id(user_client, method, url, payload):
    args = (url(999999),) if payload is None else (url(999999), payload)
    assert_forbidden(getattr(user_client, method)(*args))


# --- updates and transitions -------------------------------------------------


def test_order_patch_fields_only_records_updated_event(user, staff_client):
    order = OrderFactory(created_by=user, total_amount=Decimal("149.99"))
    response = staff_client.patch(detail_url(order.pk), {"total_amount": "200", "currency": "usd"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["total_amount"], body["currency"], body["status"]) == ("200.00", "USD", "pending")
    assert body["history"][-1]["kind"] == "updated"
    assert body["history"][-1]["changes"] == {"total_amount": ["149.99", "200.00"], "currency": ["INR", "USD"]}
    assert OrderEvent.objects.count() == 2


def test_order_patch_without_change_records_nothing(user, staff_client):
    order = OrderFactory(created_by=user, notes="same")
    response = staff_client.patch(detail_url(order.pk), {"notes": "same", "status": "pending"})
    assert response.status_code == 200, response.content
    assert OrderEvent.objects.count() == 1


def test_order_patch_empty_body_is_refused(user, staff_client):
    order = OrderFactory(created_by=user)
    response = staff_client.patch(detail_url(order.pk), {})
    assert_validation_error(response, "non_field_errors")
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"status": "bogus"}, "status"),
        ({"currency": "XYZ"}, "currency"),
        ({"total_amount": "0"}, "total_amount"),
        ({"total_amount": "1.999"}, "total_amount"),
        ({"tracking_number": "has space"}, "tracking_number"),
        ({"shipping_method": "teleport"}, "shipping_method"),
        ({"order_number": "ORD-NEW"}, "order_number"),
        ({"customer": 1}, "customer"),
    ],
)
def test_order_patch_invalid_field_changes_nothing(user, staff_client, payload, field):
    order = OrderFactory(created_by=user, total_amount=Decimal("149.99"))
    response = staff_client.patch(detail_url(order.pk), payload)
    assert_validation_error(response, field)
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.currency, stored.total_amount, stored.tracking_number, stored.order_number) == (
        "pending",
        "INR",
        Decimal("149.99"),
        order.tracking_number,
        order.order_number,
    )
    assert OrderEvent.objects.count() == 1


def test_order_patch_duplicate_tracking_number_is_refused(user, staff_client):
    first = OrderFactory(created_by=user)
    second = OrderFactory(created_by=user)
    original = second.tracking_number
    response = staff_client.patch(detail_url(second.pk), {"tracking_number": first.tracking_number})
    assert_validation_error(response, "tracking_number")
    second.refresh_from_db()
    assert second.tracking_number == original
    assert OrderEvent.objects.count() == 2


def test_order_change_status_refused_transition_is_a_conflict(user, staff_client):
    order = _set_status(OrderFactory(created_by=user), "shipped")
    response = staff_client.put(status_url(order.pk), {"status": "pending"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_transition"
    assert error["allowed"] == ["delivered"]
    assert error["current"] == "shipped"
    assert error["requested"] == "pending"
    assert error["message"]
    order.refresh_from_db()
    assert order.status == "shipped"
    assert OrderEvent.objects.count() == 1


def test_order_change_status_from_final_state_allows_nothing(user, staff_client):
    order = _set_status(OrderFactory(created_by=user), "cancelled")
    response = staff_client.put(status_url(order.pk), {"status": "confirmed"})
    assert response.status_code == 409
    assert response.json()["error"]["allowed"] == []
    order.refresh_from_db()
    assert order.status == "cancelled"


def test_order_patch_refused_transition_leaves_order_unchanged(user, staff_client):
    order = _set_status(OrderFactory(created_by=user, notes="before"), "processing")
    response = staff_client.patch(detail_url(order.pk), {"notes": "after", "status": "confirmed"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_transition"
    assert error["allowed"] == ["shipped", "delivered", "cancelled"]
    order.refresh_from_db()
    assert (order.status, order.notes) == ("processing", "before")
    assert OrderEvent.objects.count() == 1


def test_order_change_status_same_status_records_nothing(user, staff_client):
    order = OrderFactory(created_by=user)
    response = staff_client.put(status_url(order.pk), {"status": "pending"})
    assert response.status_code == 200
    assert OrderEvent.objects.count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [({}, "status"), ({"status": "bogus"}, "status"), ({"status": "confirmed", "x": 1}, "x")],
)
def test_order_change_status_invalid_body_is_refused(user, staff_client, payload, field):
    order = OrderFactory(created_by=user)
    response = staff_client.put(status_url(order.pk), payload)
    error = assert_validation_error(response, field)
    if field == "x":
        assert error["fields"]["x"] == ["Unknown field."]
    order.refresh_from_db()
    assert order.status == "pending"


def test_order_change_status_malformed_json_is_a_parse_error(user, staff_client):
    order = OrderFactory(created_by=user)
    response = staff_client.put(status_url(order.pk), "{status: confirmed}", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    order.refresh_from_db()
    assert order.status == "pending"


# --- history -----------------------------------------------------------------


def test_order_detail_history_lists_events_in_order(user, staff, user_client, staff_client):
    order = OrderFactory(created_by=user)
    assert staff_client.put(status_url(order.pk), {"status": "confirmed"}).status_code == 200
    assert staff_client.patch(detail_url(order.pk), {"notes": "Gift wrap"}).status_code == 200
    assert staff_client.put(status_url(order.pk), {"status": "shipped"}).status_code == 200
    response = user_client.get(detail_url(order.pk))
    assert response.status_code == 200
    history = response.json()["history"]
    assert [(e["kind"], e["from_status"], e["to_status"], e["actor"]) for e in history] == [
        ("created", "", "pending", user.username),
        ("status_changed", "pending", "confirmed", staff.username),
        ("updated", "", "", staff.username),
        ("status_changed", "confirmed", "shipped", staff.username),
    ]
    assert history[2]["changes"] == {"notes": ["", "Gift wrap"]}
    assert [e["id"] for e in history] == list(
        OrderEvent.objects.filter(order=order).order_by("created_at", "id").values_list("id", flat=True)
    )


def test_order_detail_history_only_has_this_orders_events(user, user_client):
    order = OrderFactory(created_by=user)
    OrderFactory(created_by=user)
    history = user_client.get(detail_url(order.pk)).json()["history"]
    assert len(history) == 1
    assert OrderEvent.objects.count() == 2


def test_order_list_items_have_no_history(user, user_client):
    OrderFactory(created_by=user)
    item = user_client.get(LIST_URL).json()["results"][0]
    assert "history" not in item
    assert item["next_statuses"] == ["confirmed", "processing", "shipped", "delivered", "cancelled"]


# --- visibility --------------------------------------------------------------


def test_order_of_another_user_is_not_found(user, other_client):
    order = OrderFactory(created_by=user)
    assert_not_found(other_client.get(detail_url(order.pk)))


def test_order_of_another_user_is_not_in_list(user, other_user, other_client):
    OrderFactory(created_by=user)
    mine = OrderFactory(created_by=other_user)
    response = other_client.get(LIST_URL)
    assert _ids(response) == [mine.pk]
    assert response.json()["count"] == 1


def test_order_list_staff_see_all(user, other_user, staff_client):
    orders = [OrderFactory(created_by=user), OrderFactory(created_by=other_user)]
    assert sorted(_ids(staff_client.get(LIST_URL))) == sorted(o.pk for o in orders)


def test_order_of_a_customer_that_takes_my_email_stays_hidden(user, staff, user_client):
    # An email on a record is not an owner: the orders of staff's own record stay staff's.
    staff_order = OrderFactory(created_by=staff)
    services.customer_update(customer=staff_order.customer, by=staff, email=user.email)
    assert _ids(user_client.get(LIST_URL)) == []
    assert_not_found(user_client.get(detail_url(staff_order.pk)))


def test_order_unknown_id_is_not_found(user_client, staff_client):
    assert_not_found(user_client.get(detail_url(999999)))
    assert_not_found(staff_client.get(detail_url(999999)))
    assert_not_found(staff_client.patch(detail_url(999999), {"notes": "x"}))
    assert_not_found(staff_client.put(status_url(999999), {"status": "confirmed"}))
    assert_not_found(staff_client.delete(detail_url(999999)))


def test_order_unauthenticated_is_refused(db, user, anon_client):
    order = OrderFactory(created_by=user)
    for response in (anon_client.get(LIST_URL), anon_client.get(detail_url(order.pk))):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


def test_order_invalid_token_is_refused(db, anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert anon_client.get(LIST_URL).status_code == 401


# --- filters, ordering, pagination -------------------------------------------


def test_order_filter_by_status(user, staff_client):
    pending = OrderFactory(created_by=user)
    shipped = _set_status(OrderFactory(created_by=user), "shipped")
    _set_status(OrderFactory(created_by=user), "cancelled")
    assert _ids(staff_client.get(LIST_URL, {"status": "pending"})) == [pending.pk]
    assert _ids(staff_client.get(LIST_URL, {"status": "shipped"})) == [shipped.pk]


def test_order_filter_by_repeated_status(user, staff_client):
    pending = OrderFactory(created_by=user)
    shipped = _set_status(OrderFactory(created_by=user), "shipped")
    _set_status(OrderFactory(created_by=user), "cancelled")
    response = staff_client.get(f"{LIST_URL}?status=pending&status=shipped")
    assert sorted(_ids(response)) == sorted([pending.pk, shipped.pk])
    assert response.json()["count"] == 2


def test_order_filter_by_customer(user, other_user, staff_client):
    mine = OrderFactory(created_by=user)
    OrderFactory(created_by=other_user)
    assert _ids(staff_client.get(LIST_URL, {"customer": mine.customer_id})) == [mine.pk]


def test_order_filter_by_customer_cannot_reveal_hidden_orders(user, other_user, other_client):
    hidden = OrderFactory(created_by=user)
    response = other_client.get(LIST_URL, {"customer": hidden.customer_id})
    assert _ids(response) == []


def test_order_filter_by_created_range(user, staff_client):
    old = _set_created_at(OrderFactory(created_by=user), datetime(2024, 1, 1, 12, tzinfo=UTC))
    mid = _set_created_at(OrderFactory(created_by=user), datetime(2024, 6, 1, 12, tzinfo=UTC))
    new = _set_created_at(OrderFactory(created_by=user), datetime(2025, 1, 1, 12, tzinfo=UTC))
    after = staff_client.get(LIST_URL, {"created_after": "2024-03-01T00:00:00Z"})
    assert sorted(_ids(after)) == sorted([mid.pk, new.pk])
    before = staff_client.get(LIST_URL, {"created_before": "2024-03-01T00:00:00+00:00"})
    assert _ids(before) == [old.pk]
    between = staff_client.get(
        LIST_URL, {"created_after": "2024-03-01T00:00:00Z", "created_before": "2024-12-31T00:00:00Z"}
    )
    assert _ids(between) == [mid.pk]


def test_order_filter_created_after_is_inclusive_and_before_exclusive(user, staff_client):
    moment = datetime(2024, 6, 1, 12, tzinfo=UTC)
    order = _set_created_at(OrderFactory(created_by=user), moment)
    assert _ids(staff_client.get(LIST_URL, {"created_after": moment.isoformat()})) == [order.pk]
    assert _ids(staff_client.get(LIST_URL, {"created_before": moment.isoformat()})) == []


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "bogus"}, "status"),
        ({"created_after": "notadate"}, "created_after"),
        ({"created_before": "2024-13-45T00:00:00Z"}, "created_before"),
        ({"customer": "abc"}, "customer"),
    ],
)
def test_order_filter_invalid_value_is_refused(user, staff_client, params, field):
    OrderFactory(created_by=user)
    assert_validation_error(staff_client.get(LIST_URL, params), field)


def test_order_ordering_by_total_amount(user, staff_client):
    mid = OrderFactory(created_by=user, total_amount=Decimal("50.00"))
    low = OrderFactory(created_by=user, total_amount=Decimal("5.00"))
    high = OrderFactory(created_by=user, total_amount=Decimal("500.00"))
    assert _ids(staff_client.get(LIST_URL, {"ordering": "total_amount"})) == [low.pk, mid.pk, high.pk]
    assert _ids(staff_client.get(LIST_URL, {"ordering": "-total_amount"})) == [high.pk, mid.pk, low.pk]


def test_order_default_ordering_is_newest_first(user, staff_client):
    first = _set_created_at(OrderFactory(created_by=user), datetime(2024, 1, 1, tzinfo=UTC))
    second = _set_created_at(OrderFactory(created_by=user), datetime(2024, 2, 1, tzinfo=UTC))
    assert _ids(staff_client.get(LIST_URL)) == [second.pk, first.pk]


def test_order_pagination(user, staff_client):
    orders = [_set_created_at(OrderFactory(created_by=user), datetime(2024, 1, day, tzinfo=UTC)) for day in (1, 2, 3)]
    first = staff_client.get(LIST_URL, {"page_size": 2})
    body = first.json()
    assert body["count"] == 3
    assert body["next"] is not None
    assert body["previous"] is None
    assert [o["id"] for o in body["results"]] == [orders[2].pk, orders[1].pk]
    second = staff_client.get(body["next"])
    body2 = second.json()
    assert body2["count"] == 3
    assert body2["next"] is None
    assert [o["id"] for o in body2["results"]] == [orders[0].pk]


def test_order_pagination_page_out_of_range_is_not_found(user, staff_client):
    OrderFactory(created_by=user)
    assert_not_found(staff_client.get(LIST_URL, {"page": 5}))
