from django.apps import AppConfig


class NotifyConfig(AppConfig):
    """Notifications: the delivery ledger, the email and Telegram channels, the workers."""

    name = "notify"
