"""Who is on the other end of a socket, and whether the page that opened it is ours."""

from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework import exceptions

from core.authentication import TokenAuthentication
from realtime.services import ticket_redeem


def _header(scope, name):
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def origin_allowed(scope):
    """No Origin (wscat, scripts) is fine; a browser page must come from this
    host or a trusted origin, or any site could open a socket with the
    visitor's session cookie (cross-site WebSocket hijacking)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    origin = origin.decode("latin-1")
    host = (_header(scope, b"host") or b"").decode("latin-1")
    return urlsplit(origin).netloc == host or origin in settings.CSRF_TRUSTED_ORIGINS


@database_sync_to_async
def _token_user(header):
    prefix, _, key = header.partition(b" ")
    if prefix.lower() != b"token" or not key:
        return None
    try:
        user, _ = TokenAuthentication().authenticate_credentials(key.strip())
    except exceptions.AuthenticationFailed:
        return None
    return user


async def socket_user(scope):
    """The user from the `Authorization: Token` header, a one-time `?ticket=`,
    or the session, in that order; None if the credentials offered are bad or
    there are none. A bad credential is not passed over for the next one."""
    header = _header(scope, b"authorization")
    if header is not None:
        return await _token_user(header)
    tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    if tickets:
        return await database_sync_to_async(ticket_redeem)(tickets[0])
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None
