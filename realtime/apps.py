from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The event log and its live WebSocket stream."""

    name = "realtime"
