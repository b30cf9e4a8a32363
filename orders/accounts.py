"""An account's life as far as the customer records go: registration mails a
verification code through the ledger, and verifying the email claims the
record made with it.

Above core (the account), notify (the mail) and the rest of orders (the
claim), so it is the one place that ties them together.
"""

from django.db import transaction

from core import services as core_services
from notify.services import email_verification_notify
from orders.services import customer_claim


@transaction.atomic
def account_register(**fields):
    """A new account (core.services.user_register's fields), and the mail with its verification code."""
    user = core_services.user_register(**fields)
    email_verification_notify(user=user, code=core_services.email_verification_issue(user=user))
    return user


@transaction.atomic
def account_verification_resend(*, user):
    """A fresh code by mail; the one sent before stops working."""
    email_verification_notify(user=user, code=core_services.email_verification_issue(user=user))


@transaction.atomic
def account_verify(*, code):
    """Verify the email the code went to, and claim the customer record made with it."""
    user = core_services.email_verification_redeem(code=code)
    customer_claim(user=user)
    return user
