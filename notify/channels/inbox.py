"""The in-app channel: delivering a notification is storing it in the inbox
of the account its recipient names."""

from django.contrib.auth import get_user_model

from notify.channels.base import PermanentError
from notify.inbox import inbox_message_deliver


def inbox_send(notification):
    """The inbox message's id, as the provider's id of what went out."""
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: notification.recipient}, is_active=True).first()
    if user is None:
        raise PermanentError(f"No active account is named {notification.recipient!r}.")
    return str(inbox_message_deliver(notification=notification, user=user).pk)
