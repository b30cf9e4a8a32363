from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from knox.models import AuthToken

from core import services
from core.exceptions import ApplicationError
from core.models import User
from tests.factories import PASSWORD, UserFactory


@pytest.mark.django_db
def test_user_register_creates_one_ordinary_user_with_a_hashed_password():
    user = services.user_register(username="ann", email="Ann@EXAMPLE.com", password="a-long-passphrase-9")

    assert User.objects.count() == 1
    assert user.email == "Ann@example.com"  # the domain part is normalised
    assert not user.is_staff and not user.is_superuser
    assert user.check_password("a-long-passphrase-9")


@pytest.mark.django_db
def test_user_register_refuses_a_weak_password_under_the_password_key():
    with pytest.raises(ValidationError) as exc:
        services.user_register(username="ann", email="ann@example.com", password="123")

    assert set(exc.value.message_dict) == {"password"}
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_user_register_refuses_a_taken_username_and_not_a_taken_email():
    UserFactory(username="ann", email="ann@example.com")

    with pytest.raises(ValidationError) as exc:
        services.user_register(username="ANN", email="ANN@example.com", password="a-long-passphrase-9")

    assert set(exc.value.message_dict) == {"username"}
    assert services.user_register(username="bob", email="ANN@example.com", password="a-long-passphrase-9").pk


def test_auth_token_create_issues_a_token_and_records_the_login(user):
    assert user.last_login is None

    token, key = services.auth_token_create(username=user.username, password=PASSWORD)

    assert AuthToken.objects.filter(user=user).count() == 1
    assert token.digest != key
    user.refresh_from_db()
    assert user.last_login is not None


def test_auth_token_create_refuses_a_wrong_password(user):
    with pytest.raises(ApplicationError) as exc:
        services.auth_token_create(username=user.username, password="nope")

    assert exc.value.code == "invalid_credentials"
    assert AuthToken.objects.count() == 0


def test_auth_token_revoke_deletes_that_token_only(user):
    first, _ = services.auth_token_create(username=user.username, password=PASSWORD)
    services.auth_token_create(username=user.username, password=PASSWORD)

    services.auth_token_revoke(token=first)

    assert AuthToken.objects.count() == 1
    assert not AuthToken.objects.filter(digest=first.digest).exists()


@pytest.mark.django_db
def test_demo_admin_ensure_is_idempotent_and_keeps_a_changed_password():
    user, created = services.demo_admin_ensure()
    assert created
    assert user.is_staff and user.check_password(services.DEMO_ADMIN_PASSWORD)

    user.set_password("a-new-secret-password")
    user.save()
    again, created_again = services.demo_admin_ensure()

    assert not created_again
    assert User.objects.filter(username=services.DEMO_ADMIN_USERNAME).count() == 1
    assert again.check_password("a-new-secret-password")


def test_auth_tokens_prune_deletes_the_expired_tokens_only(user):
    fresh, _ = services.auth_token_create(username=user.username, password=PASSWORD)
    stale, _ = services.auth_token_create(username=user.username, password=PASSWORD)
    AuthToken.objects.filter(pk=stale.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    assert services.auth_tokens_prune() == 1

    assert list(AuthToken.objects.values_list("pk", flat=True)) == [fresh.pk]
