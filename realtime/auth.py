"""Who is on the other end of a socket, and whether the page that opened it is ours."""

from importlib import import_module
from urllib.parse import parse_qs, urlsplit

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from knox.models import AuthToken
from rest_framework import exceptions

from core.authentication import TokenAuthentication
from realtime.services import Credential, ticket_redeem


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


def _token_credential(header):
    prefix, _, key = header.partition(b" ")
    if prefix.lower() != b"token" or not key:
        return None
    try:
        user, token = TokenAuthentication().authenticate_credentials(key.strip())
    except exceptions.AuthenticationFailed:
        return None
    return Credential(user, token=token.digest, expires_at=token.expiry)


def _session_store(session_key=None):
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _session_exists(session_key):
    return _session_store().exists(session_key)


def credential_current(credential):
    """Whether `credential` still stands: its user active with the same staff
    flag, its token not revoked or expired, its session not ended."""
    user = get_user_model().objects.filter(pk=credential.user.pk, is_active=True).only("is_staff").first()
    if user is None or user.is_staff != credential.is_staff:
        return False
    now = timezone.now()
    if credential.expires_at is not None and credential.expires_at <= now:
        return False
    if credential.token is not None:
        unexpired = Q(expiry__isnull=True) | Q(expiry__gt=now)
        if not AuthToken.objects.filter(unexpired, digest=credential.token).exists():
            return False
    return credential.session is None or _session_exists(credential.session)


def _ticket_credential(ticket):
    credential = ticket_redeem(ticket)
    return credential if credential is not None and credential_current(credential) else None


async def socket_credential(scope):
    """The Credential from the `Authorization: Token` header, a one-time
    `?ticket=`, or the session, in that order; None if the credentials offered
    are bad or there are none. A bad credential is not passed over for the next one."""
    header = _header(scope, b"authorization")
    if header is not None:
        return await database_sync_to_async(_token_credential)(header)
    tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    if tickets:
        return await database_sync_to_async(_ticket_credential)(tickets[0])
    session_key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    session = _session_store(session_key)
    user = await get_user({"session": session})  # loads the session, and checks it against the user's password
    if not user.is_authenticated:
        return None
    return Credential(user, session=session.session_key)
