from channels.routing import URLRouter
from channels.sessions import CookieMiddleware
from django.urls import path

from realtime.consumers import EventConsumer

websocket_urlpatterns = [path("ws/events/", EventConsumer.as_asgi())]

# The cookies parsed into the scope: the consumer reads the session (the
# dashboard) from there once, at the handshake, as it takes a token header or
# a one-time ticket. Not Channels' SessionMiddleware: a socket never writes
# its session, and that middleware looks at it again on every message sent.
websocket_app = CookieMiddleware(URLRouter(websocket_urlpatterns))
