"""Delivery channels. An `Outbox` sends ledger rows and returns each one's
provider message id, or raises a `DeliveryError` that says whether trying again
can help. Use one outbox per batch: it keeps the SMTP connection open between
messages."""

from notify.channels.base import DeliveryError, NotDelivered, PermanentError, RecipientBlocked, TransientError
from notify.channels.email import EmailSender
from notify.channels.inbox import inbox_send
from notify.channels.telegram import telegram_send
from notify.models import Channel


class Outbox:
    def __init__(self):
        self._email = EmailSender()

    def send(self, notification):
        if notification.channel == Channel.EMAIL:
            return self._email.send(notification)
        if notification.channel == Channel.IN_APP:
            return inbox_send(notification)
        return telegram_send(notification)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._email.close()


__all__ = ["DeliveryError", "NotDelivered", "Outbox", "PermanentError", "RecipientBlocked", "TransientError"]
