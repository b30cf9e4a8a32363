from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The event log and its live WebSocket stream."""

    name = "realtime"

    def ready(self):
        from realtime import credentials  # noqa: F401  (connects its receivers)
