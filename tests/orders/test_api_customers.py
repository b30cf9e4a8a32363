import pytest
from django.utils import timezone

from orders import services as order_services
from orders.models import Customer, NotificationPreference
from tests.factories import CustomerFactory, OrderFactory
from tests.helpers import SEED_CUSTOMER, assert_validation_error

LIST_URL = "/api/v1/customers/"

PREFERENCE_DEFAULTS = {"email_enabled": True, "telegram_enabled": True, "order_updates": True, "promotional": False}


def detail_url(customer_id):
    return f"{LIST_URL}{customer_id}/"


def preferences_url(customer_id):
    return f"{LIST_URL}{customer_id}/preferences/"


def assert_not_found(response):
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"


def _ids(response):
    return [item["id"] for item in response.json()["results"]]


# --- create ------------------------------------------------------------------


def test_customer_create_seed_payload(user, user_client):
    response = user_client.post(LIST_URL, SEED_CUSTOMER)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "John Doe"
    assert body["email"] == "john.doe@example.com"
    assert body["phone"] == "+1234567890"
    assert body["telegram_chat_id"] == 123456789
    assert (body["address"], body["city"], body["country"], body["postal_code"]) == (
        "123 Main St",
        "New York",
        "USA",
        "10001",
    )
    assert set(body) >= {"id", "created_at", "updated_at"}
    assert Customer.objects.count() == 1
    customer = Customer.objects.get()
    assert customer.pk == body["id"]
    assert customer.created_by == user
    assert customer.telegram_chat_id == 123456789
    assert NotificationPreference.objects.filter(customer=customer).count() == 1


def test_customer_create_seed_then_patch_phone(user_client):
    created = user_client.post(LIST_URL, SEED_CUSTOMER).json()
    response = user_client.patch(detail_url(created["id"]), {"phone": "+1987654321"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["phone"] == "+1987654321"
    assert body["name"] == "John Doe"
    assert body["email"] == "john.doe@example.com"
    customer = Customer.objects.get()
    assert customer.phone == "+1987654321"
    assert customer.city == "New York"


def test_customer_create_minimal_payload(user_client):
    response = user_client.post(LIST_URL, {"name": "Min", "email": "min@example.com"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["phone"] == ""
    assert body["telegram_chat_id"] is None
    assert Customer.objects.count() == 1


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("+1 415-555-0123", "+14155550123"),
        ("+1 (415) 555-0123", "+14155550123"),
        ("+44.20.7946.0958", "+442079460958"),
    ],
)
def test_customer_create_phone_punctuation_is_normalised(user_client, raw, stored):
    response = user_client.post(LIST_URL, {"name": "P", "email": "p@example.com", "phone": raw})
    assert response.status_code == 201, response.content
    assert response.json()["phone"] == stored
    assert Customer.objects.get().phone == stored


@pytest.mark.parametrize("chat_id", ["-1001234567890", -100, "987654321"])
def test_customer_create_telegram_chat_id_accepts_groups_and_users(user_client, chat_id):
    response = user_client.post(LIST_URL, {"name": "T", "email": "t@example.com", "telegram_chat_id": chat_id})
    assert response.status_code == 201, response.content
    assert response.json()["telegram_chat_id"] == int(chat_id)
    assert Customer.objects.get().telegram_chat_id == int(chat_id)


def test_customer_create_blank_telegram_chat_id_means_none(user_client):
    response = user_client.post(LIST_URL, {"name": "T", "email": "t@example.com", "telegram_chat_id": ""})
    assert response.status_code == 201, response.content
    assert Customer.objects.get().telegram_chat_id is None


@pytest.mark.parametrize(
    "override, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": ""}, "email"),
        ({"name": ""}, "name"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "+0123"}, "phone"),
        ({"phone": "+1"}, "phone"),
        ({"phone": "+1234567890123456"}, "phone"),
        ({"phone": "phone"}, "phone"),
        ({"telegram_chat_id": "abc"}, "telegram_chat_id"),
        ({"telegram_chat_id": "12.5"}, "telegram_chat_id"),
        ({"telegram_chat_id": 0}, "telegram_chat_id"),
        ({"telegram_chat_id": "0"}, "telegram_chat_id"),
        ({"telegram_chat_id": 2**52}, "telegram_chat_id"),
    ],
)
def test_customer_create_invalid_field_is_refused(user_client, override, field):
    response = user_client.post(LIST_URL, {**SEED_CUSTOMER, **override})
    assert_validation_error(response, field)
    assert Customer.objects.count() == 0
    assert NotificationPreference.objects.count() == 0


@pytest.mark.parametrize("missing", ["name", "email"])
def test_customer_create_missing_required_field_is_refused(user_client, missing):
    payload = {k: v for k, v in SEED_CUSTOMER.items() if k != missing}
    error = assert_validation_error(user_client.post(LIST_URL, payload), missing)
    assert error["fields"][missing] == ["This field is required."]
    assert Customer.objects.count() == 0


def test_customer_create_unknown_field_is_refused(user_client):
    response = user_client.post(LIST_URL, {**SEED_CUSTOMER, "nickname": "JD"})
    error = assert_validation_error(response, "nickname")
    assert error["fields"]["nickname"] == ["Unknown field."]
    assert Customer.objects.count() == 0


def test_customer_create_error_shape(user_client):
    response = user_client.post(LIST_URL, {**SEED_CUSTOMER, "phone": "12345"})
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["message"] == "Some fields are invalid."
    assert list(body["error"]["fields"]) == ["phone"]


@pytest.mark.parametrize("email", ["john.doe@example.com", "JOHN.DOE@example.com", "John.Doe@Example.com"])
def test_customer_create_duplicate_email_is_refused(user_client, email):
    assert user_client.post(LIST_URL, SEED_CUSTOMER).status_code == 201
    response = user_client.post(LIST_URL, {**SEED_CUSTOMER, "email": email})
    assert_validation_error(response, "email")
    assert Customer.objects.count() == 1
    assert NotificationPreference.objects.count() == 1


def test_customer_create_with_the_email_of_someone_elses_record_tells_nothing(other_user, user_client):
    """Enumeration: whether the hub knows an address is not for anyone who asks."""
    CustomerFactory(created_by=other_user, email="hidden@example.com")
    response = user_client.post(LIST_URL, {"name": "X", "email": "Hidden@example.com"})
    assert response.status_code == 201, response.content
    assert Customer.objects.filter(email__iexact="hidden@example.com").count() == 2


def test_customer_create_refuses_a_second_record_of_mine_with_the_same_email(user, user_client):
    CustomerFactory(created_by=user, email="twice@example.com")
    response = user_client.post(LIST_URL, {"name": "X", "email": "TWICE@example.com"})
    assert_validation_error(response, "email")
    assert response.json()["error"]["fields"]["email"] == ["You already have a customer with this email."]
    assert Customer.objects.count() == 1


def test_customer_create_unauthenticated_is_refused(db, anon_client):
    response = anon_client.post(LIST_URL, SEED_CUSTOMER)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Customer.objects.count() == 0


# --- list and retrieve -------------------------------------------------------


def test_customer_list_shows_own_customers(user, user_client):
    first = CustomerFactory(created_by=user)
    second = CustomerFactory(created_by=user)
    response = user_client.get(LIST_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert sorted(_ids(response)) == sorted([first.pk, second.pk])


def test_customer_list_hides_other_users_customers(user, other_user, other_client):
    mine = CustomerFactory(created_by=other_user)
    CustomerFactory(created_by=user)
    response = other_client.get(LIST_URL)
    assert response.status_code == 200
    assert _ids(response) == [mine.pk]
    assert response.json()["count"] == 1


def test_customer_list_leaves_out_a_record_with_my_email_that_someone_else_made(user, staff, user_client):
    carrying_my_email = CustomerFactory(created_by=staff, email=user.email.upper())
    response = user_client.get(LIST_URL)
    assert _ids(response) == []
    assert user_client.get(detail_url(carrying_my_email.pk)).status_code == 404


def test_customer_list_staff_see_all(user, other_user, staff_client):
    customers = [CustomerFactory(created_by=user), CustomerFactory(created_by=other_user)]
    response = staff_client.get(LIST_URL)
    assert response.status_code == 200
    assert sorted(_ids(response)) == sorted(c.pk for c in customers)


def test_customer_list_filter_by_email_is_case_insensitive(user, user_client):
    wanted = CustomerFactory(created_by=user, email="wanted@example.com")
    CustomerFactory(created_by=user, email="other@example.com")
    response = user_client.get(LIST_URL, {"email": "WANTED@example.com"})
    assert _ids(response) == [wanted.pk]


def test_customer_list_unauthenticated_is_refused(db, anon_client):
    assert anon_client.get(LIST_URL).status_code == 401


def test_customer_retrieve_returns_fields(user, user_client):
    customer = CustomerFactory(created_by=user, name="Jane", email="jane@example.com")
    response = user_client.get(detail_url(customer.pk))
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["email"], body["phone"], body["telegram_chat_id"]) == (
        customer.pk,
        "Jane",
        "jane@example.com",
        "+14155550123",
        123456789,
    )


def test_customer_retrieve_unknown_id_is_not_found(user_client):
    assert_not_found(user_client.get(detail_url(999999)))


def test_customer_retrieve_staff_see_any(user, staff_client):
    customer = CustomerFactory(created_by=user)
    response = staff_client.get(detail_url(customer.pk))
    assert response.status_code == 200
    assert response.json()["id"] == customer.pk


# --- update ------------------------------------------------------------------


def test_customer_put_replaces_details(user, user_client):
    customer = CustomerFactory(created_by=user, email="old@example.com")
    payload = {**SEED_CUSTOMER, "name": "Replaced", "city": "Boston"}
    response = user_client.put(detail_url(customer.pk), payload)
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.name == "Replaced"
    assert customer.email == "john.doe@example.com"
    assert customer.city == "Boston"
    assert customer.telegram_chat_id == 123456789
    assert response.json()["city"] == "Boston"


def test_customer_put_requires_all_required_fields(user, user_client):
    customer = CustomerFactory(created_by=user, name="Kept", email="kept@example.com")
    response = user_client.put(detail_url(customer.pk), {"name": "Only name"})
    assert_validation_error(response, "email")
    customer.refresh_from_db()
    assert customer.name == "Kept"


def test_customer_patch_changes_only_given_fields(user, user_client):
    customer = CustomerFactory(created_by=user, name="Kept", city="Paris")
    response = user_client.patch(detail_url(customer.pk), {"city": "Lyon"})
    assert response.status_code == 200
    customer.refresh_from_db()
    assert (customer.name, customer.city) == ("Kept", "Lyon")


def test_customer_patch_normalises_phone(user, user_client):
    customer = CustomerFactory(created_by=user)
    response = user_client.patch(detail_url(customer.pk), {"phone": "+1 415-555-0199"})
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.phone == "+14155550199"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"phone": "12345"}, "phone"),
        ({"phone": "+0123"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"telegram_chat_id": "abc"}, "telegram_chat_id"),
        ({"telegram_chat_id": "12.5"}, "telegram_chat_id"),
        ({"telegram_chat_id": 0}, "telegram_chat_id"),
        ({"nickname": "x"}, "nickname"),
    ],
)
def test_customer_patch_invalid_field_changes_nothing(user, user_client, payload, field):
    customer = CustomerFactory(created_by=user, email="c@example.com", phone="+14155550123", telegram_chat_id=42)
    response = user_client.patch(detail_url(customer.pk), payload)
    assert_validation_error(response, field)
    customer.refresh_from_db()
    assert (customer.email, customer.phone, customer.telegram_chat_id) == ("c@example.com", "+14155550123", 42)


def test_customer_patch_duplicate_email_is_refused(user, user_client):
    CustomerFactory(created_by=user, email="first@example.com")
    second = CustomerFactory(created_by=user, email="second@example.com")
    response = user_client.patch(detail_url(second.pk), {"email": "First@Example.com"})
    assert_validation_error(response, "email")
    second.refresh_from_db()
    assert second.email == "second@example.com"


def test_customer_patch_own_email_unchanged_is_accepted(user, user_client):
    customer = CustomerFactory(created_by=user, email="same@example.com")
    response = user_client.patch(detail_url(customer.pk), {"email": "same@example.com", "name": "Renamed"})
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.name == "Renamed"


def test_customer_patch_staff_may_change_anyones(user, staff_client):
    customer = CustomerFactory(created_by=user)
    response = staff_client.patch(detail_url(customer.pk), {"name": "By staff"})
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.name == "By staff"


# --- delete ------------------------------------------------------------------


def test_customer_delete_staff_without_orders(user, staff_client):
    customer = CustomerFactory(created_by=user)
    kept = CustomerFactory(created_by=user)
    response = staff_client.delete(detail_url(customer.pk))
    assert response.status_code == 204
    assert list(Customer.objects.all()) == [kept]
    assert NotificationPreference.objects.count() == 1


def test_customer_delete_regular_user_is_forbidden(user, user_client):
    customer = CustomerFactory(created_by=user)
    response = user_client.delete(detail_url(customer.pk))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Customer.objects.count() == 1
    assert NotificationPreference.objects.count() == 1


def test_customer_delete_with_orders_is_a_conflict(user, staff_client):
    order = OrderFactory(created_by=user)
    response = staff_client.delete(detail_url(order.customer_id))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "customer_has_orders"
    assert error["message"]
    assert Customer.objects.count() == 1


def test_customer_delete_unknown_id_is_not_found(staff_client):
    assert_not_found(staff_client.delete(detail_url(999999)))


# --- preferences -------------------------------------------------------------


def test_customer_preferences_get_defaults(user, user_client):
    customer = CustomerFactory(created_by=user)
    response = user_client.get(preferences_url(customer.pk))
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in PREFERENCE_DEFAULTS} == PREFERENCE_DEFAULTS
    assert "updated_at" in body


def test_customer_preferences_get_without_row_returns_defaults(user, user_client):
    customer = CustomerFactory(created_by=user)
    NotificationPreference.objects.filter(customer=customer).delete()
    response = user_client.get(preferences_url(customer.pk))
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in PREFERENCE_DEFAULTS} == PREFERENCE_DEFAULTS
    # Reading does not write.
    assert NotificationPreference.objects.count() == 0


def test_customer_preferences_patch_changes_given_flags(user, user_client):
    customer = CustomerFactory(created_by=user)
    response = user_client.patch(preferences_url(customer.pk), {"promotional": True, "telegram_enabled": False})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["email_enabled"], body["telegram_enabled"], body["order_updates"], body["promotional"]) == (
        True,
        False,
        True,
        True,
    )
    prefs = NotificationPreference.objects.get(customer=customer)
    assert (prefs.telegram_enabled, prefs.promotional, prefs.email_enabled) == (False, True, True)
    assert NotificationPreference.objects.count() == 1


def test_customer_preferences_patch_creates_missing_row(user, user_client):
    customer = CustomerFactory(created_by=user)
    NotificationPreference.objects.filter(customer=customer).delete()
    response = user_client.patch(preferences_url(customer.pk), {"order_updates": False})
    assert response.status_code == 200, response.content
    assert NotificationPreference.objects.count() == 1
    prefs = NotificationPreference.objects.get(customer=customer)
    assert (prefs.email_enabled, prefs.telegram_enabled, prefs.order_updates, prefs.promotional) == (
        True,
        True,
        False,
        False,
    )


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"sms_enabled": True}, "sms_enabled"),
        ({"promotional": "maybe"}, "promotional"),
        ({"email_enabled": None}, "email_enabled"),
    ],
)
def test_customer_preferences_patch_invalid_changes_nothing(user, user_client, payload, field):
    customer = CustomerFactory(created_by=user)
    response = user_client.patch(preferences_url(customer.pk), payload)
    error = assert_validation_error(response, field)
    if field == "sms_enabled":
        assert error["fields"]["sms_enabled"] == ["Unknown field."]
    prefs = NotificationPreference.objects.get(customer=customer)
    assert (prefs.email_enabled, prefs.telegram_enabled, prefs.order_updates, prefs.promotional) == (
        True,
        True,
        True,
        False,
    )


def test_customer_preferences_unknown_customer_is_not_found(user_client):
    assert_not_found(user_client.get(preferences_url(999999)))
    assert_not_found(user_client.patch(preferences_url(999999), {"promotional": True}))


def test_customer_preferences_staff_may_change_anyones(user, staff_client):
    customer = CustomerFactory(created_by=user)
    response = staff_client.patch(preferences_url(customer.pk), {"promotional": True})
    assert response.status_code == 200
    assert NotificationPreference.objects.get(customer=customer).promotional is True


# --- visibility --------------------------------------------------------------


def test_customer_of_another_user_is_not_found_on_retrieve(user, other_client):
    customer = CustomerFactory(created_by=user)
    assert_not_found(other_client.get(detail_url(customer.pk)))


def test_customer_of_another_user_is_not_found_on_put_and_patch(user, other_client):
    customer = CustomerFactory(created_by=user, name="Untouched")
    assert_not_found(other_client.patch(detail_url(customer.pk), {"name": "Hijacked"}))
    assert_not_found(other_client.put(detail_url(customer.pk), {**SEED_CUSTOMER, "name": "Hijacked"}))
    customer.refresh_from_db()
    assert customer.name == "Untouched"
    assert customer.email != SEED_CUSTOMER["email"]


def test_customer_of_another_user_is_not_found_on_preferences(user, other_client):
    customer = CustomerFactory(created_by=user)
    assert_not_found(other_client.get(preferences_url(customer.pk)))
    assert_not_found(other_client.patch(preferences_url(customer.pk), {"promotional": True}))
    assert NotificationPreference.objects.get(customer=customer).promotional is False


def test_customer_of_another_user_is_not_in_list(user, other_client):
    CustomerFactory(created_by=user)
    response = other_client.get(LIST_URL)
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


def test_customer_with_my_email_made_by_staff_is_mine_to_edit_once_claimed(user, staff, user_client):
    customer = CustomerFactory(created_by=staff, email=user.email)
    assert user_client.patch(detail_url(customer.pk), {"city": "Mine"}).status_code == 404

    user.email_verified_at = timezone.now()
    user.save()
    order_services.customer_claim(user=user)

    response = user_client.patch(detail_url(customer.pk), {"city": "Mine"})
    assert response.status_code == 200
    assert user_client.get(preferences_url(customer.pk)).status_code == 200
    customer.refresh_from_db()
    assert customer.city == "Mine"
