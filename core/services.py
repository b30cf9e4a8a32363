from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from knox.models import AuthToken

from core.exceptions import ApplicationError
from core.models import User


def _user_check_unique(*, username, email):
    errors = {}
    if User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["A user with this username already exists."]
    if User.objects.filter(email__iexact=email).exists():
        errors["email"] = ["A user with this email already exists."]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def user_register(*, username, email, password, first_name="", last_name=""):
    """Create an ordinary account; nothing a caller passes can make it staff."""
    email = User.objects.normalize_email(email)
    _user_check_unique(username=username, email=email)
    user = User(username=username, email=email, first_name=first_name, last_name=last_name)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Lost a race with a registration for the same username or email.
        _user_check_unique(username=username, email=email)
        raise
    return user


@transaction.atomic
def auth_token_create(*, username, password):
    """Check the credentials and issue a token; returns (token row, plain key).

    Only the key's hash is stored: the plain key exists in this response alone.
    """
    user = authenticate(username=username, password=password)
    if user is None:
        raise ApplicationError(
            "Unable to sign in with the provided username and password.",
            code="invalid_credentials",
        )
    token, key = AuthToken.objects.create(user=user, expiry=settings.TOKEN_TTL)
    update_last_login(None, user)
    return token, key


@transaction.atomic
def auth_token_revoke(*, token):
    token.delete()


DEMO_ADMIN_USERNAME = "krushnappan"
DEMO_ADMIN_PASSWORD = "admin_password"


@transaction.atomic
def demo_admin_ensure():
    """Create the seed flow's staff account once; returns (user, created).

    An existing account is left as it is, so a changed password stays changed.
    """
    user, created = User.objects.get_or_create(
        username=DEMO_ADMIN_USERNAME,
        defaults={"email": "krushnappan@example.com", "is_staff": True, "is_superuser": True},
    )
    if created:
        user.set_password(DEMO_ADMIN_PASSWORD)
        user.save(update_fields=["password"])
    return user, created
