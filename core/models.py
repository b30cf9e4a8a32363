from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """An account that signs in to the API. Staff see and change everything."""

    class Meta:
        constraints = [
            # One account per email address, whatever its case; accounts made
            # without one (e.g. by createsuperuser) are not held to it.
            models.UniqueConstraint(
                Lower("email"),
                condition=~models.Q(email=""),
                name="core_user_email_ci_unique",
                violation_error_message="A user with this email already exists.",
            ),
        ]

    @property
    def is_admin(self):
        return self.is_staff
