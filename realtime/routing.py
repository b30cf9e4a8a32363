from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path

from realtime.consumers import EventConsumer

websocket_urlpatterns = [path("ws/events/", EventConsumer.as_asgi())]

# Session auth (the dashboard) in front of the routes; the consumer also takes
# a token header or a one-time ticket.
websocket_app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
