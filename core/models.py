from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """An account that signs in to the API. Staff see and change everything.

    Anyone may register with any address, so an email proves nothing until it
    is verified: only then does it count (it claims customer records made
    with it). Two accounts may carry one address; only one may verify it.
    """

    email_verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                condition=models.Q(email_verified_at__isnull=False) & ~models.Q(email=""),
                name="core_user_verified_email_ci_unique",
                violation_error_message="Another account has verified this email.",
            ),
        ]

    @property
    def is_admin(self):
        return self.is_staff

    @property
    def email_verified(self):
        return self.email_verified_at is not None


class EmailVerification(models.Model):
    """A code sent to an account's email; it works once, before it expires, for that address."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_verifications")
    email = models.EmailField(max_length=254)
    # Only the code's hash is kept: the plain code exists in the mail alone.
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"verification of {self.email} for {self.user_id}"
