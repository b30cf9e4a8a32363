"""The in-app channel: delivering a notification is storing it in the inbox
of the account its recipient names."""

from notify.channels.base import PermanentError
from notify.inbox import inbox_message_deliver
from notify.selectors import accounts_active_named


def inbox_send(notification):
    """The inbox message's id, as the provider's id of what went out."""
    user = accounts_active_named([notification.recipient]).get(notification.recipient)
    if user is None:
        raise PermanentError(f"No active account is named {notification.recipient!r}.")
    return str(inbox_message_deliver(notification=notification, user=user).pk)
