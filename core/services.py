import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from knox.models import AuthToken

from core.exceptions import ApplicationError, Conflict
from core.models import EmailVerification, User


def _user_check_unique(*, username):
    # Only the username: whether an email is known to the hub is nobody's business.
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": ["A user with this username already exists."]})


@transaction.atomic
def user_register(*, username, email, password, first_name="", last_name=""):
    """Create an ordinary account, its email not yet verified; nothing a caller
    passes can make it staff."""
    email = User.objects.normalize_email(email)
    _user_check_unique(username=username)
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
        # Lost a race with a registration for the same username.
        _user_check_unique(username=username)
        raise
    return user


def _code_digest(code):
    return hashlib.sha256(code.encode()).hexdigest()


@transaction.atomic
def email_verification_issue(*, user):
    """A new code for `user`'s email, replacing any still unused; returns the plain code.

    The code is long and random, so it cannot be guessed within its lifetime;
    only its hash is stored.
    """
    if user.email_verified:
        raise Conflict("Your email is verified already.", code="already_verified")
    if not user.email:
        raise ApplicationError("Your account has no email address to verify.", code="no_email")
    EmailVerification.objects.filter(user=user, used_at__isnull=True).delete()
    code = secrets.token_urlsafe(24)
    EmailVerification.objects.create(
        user=user,
        email=user.email,
        digest=_code_digest(code),
        expires_at=timezone.now() + settings.EMAIL_VERIFICATION_TTL,
    )
    return code


@transaction.atomic
def email_verification_redeem(*, code):
    """Mark the email the code was sent to as verified; returns the user.

    A code works once, before it expires, and only while the account still
    carries the address it was sent to.
    """
    invalid = ApplicationError("This verification code is not valid.", code="invalid_code")
    if not isinstance(code, str) or not code:
        raise invalid
    verification = (
        EmailVerification.objects.select_for_update().select_related("user").filter(digest=_code_digest(code)).first()
    )
    user = verification.user if verification else None
    if verification is None or verification.used_at is not None or verification.email.lower() != user.email.lower():
        raise invalid
    now = timezone.now()
    if verification.expires_at <= now:
        raise ApplicationError("This verification code has expired; ask for a new one.", code="code_expired")
    # Whoever holds the code reads that address's mail, so telling them is no leak.
    taken = Conflict("Another account has verified this email.", code="email_taken")
    if User.objects.filter(email__iexact=user.email, email_verified_at__isnull=False).exclude(pk=user.pk).exists():
        raise taken
    verification.used_at = now
    verification.save(update_fields=["used_at"])
    if not user.email_verified:
        user.email_verified_at = now
        try:
            with transaction.atomic():
                user.save(update_fields=["email_verified_at"])
        except IntegrityError:
            raise taken from None
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


@transaction.atomic
def auth_tokens_prune():
    """Delete the tokens that expired; returns how many went."""
    return AuthToken.objects.filter(expiry__lt=timezone.now()).delete()[0]


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
