"""Who owns a customer record, played by an attacker over the API: an email
someone else typed in grants nothing; verifying it claims the record made with
it, unless a verified account owns that record already."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core import services as core_services
from core.models import EmailVerification, User
from notify.models import Notification, NotificationKind
from orders.models import Customer, Order
from tests.helpers import SEED_USER, verification_code

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register/"
VERIFY = "/api/v1/auth/verify/"
RESEND = "/api/v1/auth/verify/resend/"
CHECK = "/api/v1/auth/token/check/"
CUSTOMERS = "/api/v1/customers/"
ORDERS = "/api/v1/orders/"
NOTIFICATIONS = "/api/v1/notifications/"
ORDER = {"total_amount": "149.99", "shipping_address": "1 Secret Lane", "notes": "leave at the back door"}


def _register(anon_client, username, email):
    """A new account over the API; (user, its API client, its verification code)."""
    r = anon_client.post(REGISTER, {**SEED_USER, "username": username, "email": email})
    assert r.status_code == 201, r.content
    user = User.objects.get(pk=r.json()["id"])
    mail = Notification.objects.filter(kind=NotificationKind.EMAIL_VERIFICATION, recipient__iexact=email).latest("id")
    _, key = core_services.auth_token_create(username=username, password=SEED_USER["password"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return user, client, verification_code(mail.message)


def _verify(anon_client, code, status=200):
    r = anon_client.post(VERIFY, {"code": code})
    assert r.status_code == status, r.content
    return r.json()


def _ids(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _order(client):
    r = client.post(ORDERS, ORDER)
    assert r.status_code == 201, r.content
    return r.json()


def _customer(client, email, **fields):
    r = client.post(CUSTOMERS, {"name": "Someone", "email": email, **fields})
    assert r.status_code == 201, r.content
    return r.json()


def test_pre_squat_gives_the_attacker_nothing_of_the_victims_orders(anon_client, staff_client):
    attacker, attacker_client, _ = _register(anon_client, "attacker", "attacker@example.com")
    squat = _customer(attacker_client, "victim@example.com", telegram_chat_id=666)
    victim, victim_client, _ = _register(anon_client, "victim", "victim@example.com")

    order = _order(victim_client)

    assert order["customer"]["id"] != squat["id"]
    assert attacker_client.get(f"{ORDERS}{order['id']}/").status_code == 404
    assert _ids(attacker_client.get(ORDERS)) == []
    assert _ids(attacker_client.get(NOTIFICATIONS)) == []
    # Turning the squatted record to the attacker's own contacts redirects nothing of the victim's.
    r = attacker_client.patch(f"{CUSTOMERS}{squat['id']}/", {"email": "attacker@example.com", "telegram_chat_id": 7})
    assert r.status_code == 200
    assert staff_client.put(f"{ORDERS}{order['id']}/status/", {"status": "confirmed"}).status_code == 200
    recipients = set(Notification.objects.filter(order_id=order["id"]).values_list("channel", "recipient"))
    assert ("email", "victim@example.com") in recipients
    assert not {r for _, r in recipients} & {"attacker@example.com", "7", "666"}
    # The victim keeps their own record.
    assert victim_client.get(f"{CUSTOMERS}{order['customer']['id']}/").status_code == 200
    assert Customer.objects.get(pk=order["customer"]["id"]).owner == victim


def test_post_squat_after_the_victim_registered_gives_nothing_either(anon_client):
    victim, victim_client, _ = _register(anon_client, "victim", "victim@example.com")
    first = _order(victim_client)
    _, attacker_client, _ = _register(anon_client, "attacker", "attacker@example.com")
    squat = _customer(attacker_client, "VICTIM@example.com")

    second = _order(victim_client)

    assert first["customer"]["id"] == second["customer"]["id"] != squat["id"]
    for order in (first, second):
        assert attacker_client.get(f"{ORDERS}{order['id']}/").status_code == 404
    assert _ids(attacker_client.get(CUSTOMERS)) == [squat["id"]]


def test_registering_with_someone_elses_email_reaches_nothing_of_their_record(anon_client, user_client):
    theirs = _customer(user_client, "ann@example.com", telegram_chat_id=123)
    _, attacker_client, _ = _register(anon_client, "attacker", "ann@example.com")  # never verified

    assert attacker_client.get(f"{CUSTOMERS}{theirs['id']}/").status_code == 404
    assert attacker_client.patch(f"{CUSTOMERS}{theirs['id']}/", {"telegram_chat_id": 666}).status_code == 404
    assert attacker_client.patch(f"{CUSTOMERS}{theirs['id']}/preferences/", {"order_updates": False}).status_code == 404
    assert _ids(attacker_client.get(CUSTOMERS)) == []
    customer = Customer.objects.get(pk=theirs["id"])
    assert (customer.telegram_chat_id, customer.preferences.order_updates, customer.owner) == (123, True, None)
    # Their own order goes to a record of their own, not to this one.
    assert _order(attacker_client)["customer"]["id"] != theirs["id"]


def test_verifying_claims_the_record_made_with_the_email_and_its_creator_loses_it(anon_client, user, user_client):
    made = _customer(user_client, "ann@example.com", telegram_chat_id=123)
    ann, ann_client, code = _register(anon_client, "ann", "ann@example.com")
    assert ann_client.get(CHECK).json()["user"]["email_verified"] is False

    body = _verify(anon_client, code)

    assert body["email_verified"] is True
    assert ann_client.get(CHECK).json()["user"]["email_verified"] is True
    assert _ids(ann_client.get(CUSTOMERS)) == [made["id"]]
    assert Customer.objects.get(pk=made["id"]).owner == ann
    order = _order(ann_client)
    assert order["customer"]["id"] == made["id"]
    # The creator sees neither the record nor the orders placed after the claim.
    assert user_client.get(f"{CUSTOMERS}{made['id']}/").status_code == 404
    assert user_client.get(f"{ORDERS}{order['id']}/").status_code == 404
    assert user_client.patch(f"{CUSTOMERS}{made['id']}/", {"telegram_chat_id": 666}).status_code == 404
    # The verified owner may send its notifications elsewhere.
    r = ann_client.patch(f"{CUSTOMERS}{made['id']}/", {"telegram_chat_id": 456, "email": "ann@example.com"})
    assert r.status_code == 200, r.content


def test_the_claim_is_refused_when_a_verified_account_owns_the_record(anon_client):
    owner, owner_client, code = _register(anon_client, "owner", "owner@example.com")
    _verify(anon_client, code)
    record = _order(owner_client)["customer"]
    assert owner_client.patch(f"{CUSTOMERS}{record['id']}/", {"email": "ann@example.com"}).status_code == 200

    ann, ann_client, ann_code = _register(anon_client, "ann", "ann@example.com")
    _verify(anon_client, ann_code)

    assert Customer.objects.get(pk=record["id"]).owner == owner
    assert _ids(ann_client.get(CUSTOMERS)) == []
    assert _order(ann_client)["customer"]["id"] != record["id"]


def test_an_email_verified_by_one_account_cannot_be_verified_by_another(anon_client):
    _, _, first = _register(anon_client, "first", "ann@example.com")
    _, _, second = _register(anon_client, "second", "Ann@Example.com")
    _verify(anon_client, first)

    body = _verify(anon_client, second, status=409)

    assert body["error"]["code"] == "email_taken"
    assert User.objects.filter(email_verified_at__isnull=False).count() == 1


def test_an_unverified_owner_may_not_redirect_their_record(anon_client, staff_client):
    _, ann_client, _ = _register(anon_client, "ann", "ann@example.com")
    record = _order(ann_client)["customer"]

    for change in ({"email": "elsewhere@example.com"}, {"telegram_chat_id": 666}):
        r = ann_client.patch(f"{CUSTOMERS}{record['id']}/", change)
        assert r.status_code == 403, r.content
        assert r.json()["error"]["code"] == "email_not_verified"
    assert ann_client.patch(f"{CUSTOMERS}{record['id']}/", {"phone": "+14155550100"}).status_code == 200
    # The same values again change nothing, so they are no redirect.
    assert ann_client.patch(f"{CUSTOMERS}{record['id']}/", {"email": "ann@example.com"}).status_code == 200
    assert staff_client.patch(f"{CUSTOMERS}{record['id']}/", {"telegram_chat_id": 42}).status_code == 200
    customer = Customer.objects.get(pk=record["id"])
    assert (customer.email, customer.telegram_chat_id) == ("ann@example.com", 42)


def test_a_verification_code_works_once(anon_client):
    _, _, code = _register(anon_client, "ann", "ann@example.com")
    _verify(anon_client, code)

    assert _verify(anon_client, code, status=400)["error"]["code"] == "invalid_code"
    assert _verify(anon_client, "not-a-code", status=400)["error"]["code"] == "invalid_code"


def test_a_verification_code_expires(anon_client, settings):
    ann, _, code = _register(anon_client, "ann", "ann@example.com")
    EmailVerification.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _verify(anon_client, code, status=400)["error"]["code"] == "code_expired"
    ann.refresh_from_db()
    assert not ann.email_verified


def test_resend_mails_a_new_code_and_the_old_one_stops_working(anon_client):
    ann, ann_client, old = _register(anon_client, "ann", "ann@example.com")

    assert ann_client.post(RESEND).status_code == 202

    mails = Notification.objects.filter(kind=NotificationKind.EMAIL_VERIFICATION, recipient="ann@example.com")
    assert mails.count() == 2
    new = verification_code(mails.latest("id").message)
    assert new != old
    assert _verify(anon_client, old, status=400)["error"]["code"] == "invalid_code"
    _verify(anon_client, new)
    assert ann_client.post(RESEND).json()["error"]["code"] == "already_verified"


def test_resend_is_throttled(anon_client, settings):
    _, ann_client, _ = _register(anon_client, "ann", "ann@example.com")

    statuses = [ann_client.post(RESEND).status_code for _ in range(4)]

    assert statuses == [202, 202, 202, 429]


def test_a_verification_mail_is_a_ledger_row_only_staff_see(anon_client, staff_client):
    ann, ann_client, code = _register(anon_client, "ann", "ann@example.com")

    (mail,) = Notification.objects.filter(kind=NotificationKind.EMAIL_VERIFICATION)
    assert (mail.channel, mail.recipient, mail.sender, mail.customer) == ("email", "ann@example.com", None, None)
    assert code in mail.message and code in mail.html_message
    assert mail.status in {"pending", "queued"}
    # Whoever registered must read the mail to get the code, not the API.
    assert _ids(ann_client.get(NOTIFICATIONS)) == []
    assert ann_client.get(f"{NOTIFICATIONS}{mail.pk}/").status_code == 404
    assert mail.pk in _ids(staff_client.get(NOTIFICATIONS))


def test_the_seed_flow_needs_no_verification(anon_client):
    """register → token → customer → order → notifications → preferences, unverified."""
    _, client, _ = _register(anon_client, "demo_user", "demo@example.com")
    customer = _customer(client, "john.doe@example.com", telegram_chat_id="123456789")
    assert client.patch(f"{CUSTOMERS}{customer['id']}/", {"phone": "+1987654321"}).status_code == 200
    order = _order(client)
    assert order["customer"]["email"] == "demo@example.com"
    assert client.get(f"{ORDERS}{order['id']}/").status_code == 200
    assert set(_ids(client.get(NOTIFICATIONS))) == set(
        Notification.objects.filter(order_id=order["id"]).values_list("pk", flat=True)
    )
    prefs = {"email_enabled": True, "telegram_enabled": False, "order_updates": True, "promotional": False}
    assert client.patch(f"{CUSTOMERS}{customer['id']}/preferences/", prefs).status_code == 200
    assert Order.objects.count() == 1
