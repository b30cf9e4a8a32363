from django.apps import AppConfig


class FrontendConfig(AppConfig):
    """The browser pages served at /."""

    name = "frontend"
