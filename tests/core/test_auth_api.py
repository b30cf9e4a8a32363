from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from core import services as core_services
from core.models import User
from tests.factories import PASSWORD, UserFactory
from tests.helpers import SEED_USER

REGISTER = "/api/v1/auth/register/"
TOKEN = "/api/v1/auth/token/"
CHECK = "/api/v1/auth/token/check/"
LOGOUT = "/api/v1/auth/logout/"


def _token_for(username, password=PASSWORD, client=None):
    return (client or APIClient()).post(TOKEN, {"username": username, "password": password})


@pytest.mark.django_db
def test_register_creates_an_ordinary_user_and_never_returns_the_password(anon_client):
    r = anon_client.post(REGISTER, SEED_USER)

    assert r.status_code == 201
    body = r.json()
    assert body["username"] == "demo_user"
    assert body["is_admin"] is False
    assert "password" not in body and "secure_password123" not in r.content.decode()
    user = User.objects.get()
    assert not user.is_staff and not user.is_superuser
    assert user.password != "secure_password123" and user.check_password("secure_password123")


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["is_staff", "is_superuser", "is_admin", "groups"])
def test_register_refuses_privilege_fields(anon_client, field):
    r = anon_client.post(REGISTER, {**SEED_USER, field: True})

    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {field: ["Unknown field."]}
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_register_refuses_a_taken_username_whatever_the_case(anon_client):
    assert anon_client.post(REGISTER, SEED_USER).status_code == 201

    r = anon_client.post(REGISTER, {**SEED_USER, "username": "DEMO_USER", "email": "other@example.com"})

    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {"username": ["A user with this username already exists."]}
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_register_with_a_known_email_tells_nothing_about_it(anon_client):
    """Whether an address is known to the hub is not for anyone who asks: a
    second account may register with it, unverified, and reaches nothing."""
    assert anon_client.post(REGISTER, SEED_USER).status_code == 201

    r = anon_client.post(REGISTER, {**SEED_USER, "username": "someone_else", "email": "Demo@Example.com"})

    assert r.status_code == 201
    assert r.json()["email_verified"] is False
    assert User.objects.filter(email__iexact="demo@example.com").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["short1", "password123", "83749261538", "demo_user1"])
def test_register_applies_django_password_validators(anon_client, password):
    r = anon_client.post(REGISTER, {**SEED_USER, "password": password})

    assert r.status_code == 400
    assert list(r.json()["error"]["fields"]) == ["password"]
    assert User.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"username": "has space"}, "username"),
        ({"username": ""}, "username"),
    ],
)
def test_register_validates_fields(anon_client, change, field):
    r = anon_client.post(REGISTER, {**SEED_USER, **change})

    assert r.status_code == 400
    assert field in r.json()["error"]["fields"]
    assert User.objects.count() == 0


def test_token_is_issued_stored_hashed_and_expires_after_the_configured_ttl(user, settings):
    settings.TOKEN_TTL = timedelta(hours=2)

    r = _token_for(user.username)

    assert r.status_code == 200
    key = r.json()["token"]
    token = AuthToken.objects.get()
    assert token.user == user
    assert key not in (token.digest, token.token_key)
    expected = timezone.now() + timedelta(hours=2)
    assert abs(token.expiry - expected) < timedelta(seconds=30)
    assert r.json()["expires_at"] == token.expiry.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "username, password",
    [("known", "wrong-password"), ("nobody", PASSWORD)],
)
def test_token_refuses_wrong_credentials_clearly(db, username, password):
    UserFactory(username="known")

    r = _token_for(username, password)

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_credentials"
    assert AuthToken.objects.count() == 0


def test_token_refuses_an_inactive_user(db):
    user = UserFactory(is_active=False)

    assert _token_for(user.username).status_code == 400


def test_token_attempts_are_throttled_per_address(user, settings):
    client = APIClient()
    for _ in range(10):
        assert _token_for(user.username, "wrong", client).status_code == 400

    r = _token_for(user.username, client=client)

    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled"
    assert r.json()["error"]["retry_after"] > 0
    assert int(r.headers["Retry-After"]) > 0


def test_token_attempts_are_throttled_per_username_across_addresses(user):
    for n in range(10):
        client = APIClient(REMOTE_ADDR=f"10.0.0.{n + 1}")
        assert _token_for(user.username, "wrong", client).status_code == 400

    r = _token_for(user.username, client=APIClient(REMOTE_ADDR="10.0.1.1"))

    assert r.status_code == 429


def test_token_check_reports_user_role_and_expiry(user_client, user):
    r = user_client.get(CHECK)

    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is True
    assert body["user"]["username"] == user.username
    assert body["is_admin"] is False
    assert body["expires_at"] is not None


def test_token_check_says_admin_for_staff(staff_client):
    assert staff_client.get(CHECK).json()["is_admin"] is True


@pytest.mark.parametrize(
    "header",
    [None, "Token", "Token not-a-real-token", "Token a b", "Bearer whatever", "Token caf\u00e9"],
)
def test_token_check_refuses_missing_or_bad_tokens(db, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    r = client.get(CHECK)

    assert r.status_code == 401
    assert r.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}
    assert r.headers["WWW-Authenticate"] == "Token"


def test_expired_token_is_refused_and_removed(user_client):
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))

    r = user_client.get(CHECK)

    assert r.status_code == 401
    assert AuthToken.objects.count() == 0


def test_logout_revokes_only_the_token_in_use(user):
    first, second = APIClient(), APIClient()
    for client in (first, second):
        client.credentials(HTTP_AUTHORIZATION=f"Token {_token_for(user.username).json()['token']}")

    assert first.post(LOGOUT).status_code == 204

    assert first.get(CHECK).status_code == 401
    assert second.get(CHECK).status_code == 200
    assert AuthToken.objects.count() == 1


def test_logout_needs_a_token(db):
    assert APIClient().post(LOGOUT).status_code == 401


@pytest.mark.django_db
def test_a_token_is_checked_in_one_query(user, django_assert_num_queries):
    """knox would read every token of the user on each request; the hub reads the one it was given."""
    for _ in range(3):
        core_services.auth_token_create(username=user.username, password=PASSWORD)
    _, key = core_services.auth_token_create(username=user.username, password=PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    with django_assert_num_queries(1):
        assert client.get("/api/v1/auth/token/check/").status_code == 200
