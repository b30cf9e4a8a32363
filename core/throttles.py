import math
from functools import wraps

from django.http import HttpResponse
from django.utils.html import escape
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from core.redis import redis_optional


class _FailOpen:
    """A throttle that cannot count (Redis is down or slow) lets the request
    through rather than fail it: the limits are there to slow abuse, and an
    outage should not shut out everyone. The password hasher still makes
    every guess slow."""

    def allow_request(self, request, view):
        return redis_optional("throttle", super().allow_request, request, view, default=True)


class ScopedThrottle(_FailOpen, ScopedRateThrottle):
    """DRF's ScopedRateThrottle (a view's `throttle_scope`), failing open."""


def _username(request):
    data = getattr(request, "data", None)
    if data is None:  # a plain Django request: the admin's sign-in form
        data = request.POST
    username = data.get("username") if hasattr(data, "get") else None
    return username if isinstance(username, str) and username else None


class LoginUsernameThrottle(_FailOpen, SimpleRateThrottle):
    """Counts sign-in attempts per username, whatever address they come from."""

    scope = "login_username"

    def get_cache_key(self, request, view):
        username = _username(request)
        if username is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": username.lower()[:150]}


class _AuthScope:
    throttle_scope = "auth"


def login_throttled(login_view):
    """The admin's sign-in, held to the API's sign-in throttles: per address
    and per username (AUTH_THROTTLE_RATE). Only a form post counts."""

    @wraps(login_view)
    def view(request, *args, **kwargs):
        if request.method == "POST":
            for throttle in (ScopedThrottle(), LoginUsernameThrottle()):
                if not throttle.allow_request(request, _AuthScope()):
                    wait = math.ceil(throttle.wait() or 1)
                    message = f"Too many sign-in attempts. Try again in {wait} seconds."
                    response = HttpResponse(f"<h1>{escape(message)}</h1>", status=429)
                    response["Retry-After"] = str(wait)
                    return response
        return login_view(request, *args, **kwargs)

    return view
