from django.core.checks import Error, register
from django.db import DatabaseError

from core.models import User
from core.services import DEMO_ADMIN_PASSWORD, DEMO_ADMIN_USERNAME


@register(deploy=True)
def demo_admin_password_check(app_configs=None, **kwargs):
    """The demo staff account's published password must not reach production."""
    try:
        user = User.objects.filter(username=DEMO_ADMIN_USERNAME, is_active=True).first()
    except DatabaseError:
        return []  # no database yet: nothing to check
    if user is not None and user.check_password(DEMO_ADMIN_PASSWORD):
        return [
            Error(
                f"The demo staff account {DEMO_ADMIN_USERNAME!r} still has its published password.",
                hint=f"Run `python manage.py changepassword {DEMO_ADMIN_USERNAME}` or deactivate the account.",
                id="core.E001",
            )
        ]
    return []
