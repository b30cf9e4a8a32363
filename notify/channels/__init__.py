"""Delivery channels. `channel_send(notification)` sends one ledger row and
returns the provider's message id, or raises a `DeliveryError` that says
whether trying again can help."""

from notify.channels.base import DeliveryError, PermanentError, RecipientBlocked, TransientError
from notify.channels.email import email_send
from notify.channels.telegram import telegram_send
from notify.models import Channel

_SENDERS = {Channel.EMAIL: email_send, Channel.TELEGRAM: telegram_send}


def channel_send(notification):
    return _SENDERS[notification.channel](notification)


__all__ = ["DeliveryError", "PermanentError", "RecipientBlocked", "TransientError", "channel_send"]
