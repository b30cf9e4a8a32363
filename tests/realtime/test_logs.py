"""A socket's log lines: one when its handshake is answered, one when it closes,
both under the handshake's request id."""

import logging
import re

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from core import services as core_services
from core.logs import json_formatter
from realtime.routing import websocket_app
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/ws/events/?probe=query-secret-value"
TIMEOUT = 3
NEW_ID = re.compile(r"[0-9a-f]{32}")


def _token(user):
    _, key = core_services.auth_token_create(username=user.username, password=PASSWORD)
    return key


def _socket_lines(caplog):
    return [r for r in caplog.records if r.name == "hub.socket"]


def _open_and_close(headers, client=None):
    """Open a socket with `headers` (and `client` as the peer), then close it;
    returns whether it was accepted."""

    async def scenario():
        socket = WebsocketCommunicator(websocket_app, URL, headers=headers)
        if client:
            socket.scope["client"] = client  # the application reads it once the handshake starts
        connected, _ = await socket.connect(timeout=TIMEOUT)
        # As Daphne does after either: a refused handshake is a disconnect too.
        await socket.disconnect(code=1000 if connected else 1006)
        return connected

    return async_to_sync(scenario)()


@pytest.fixture(autouse=True)
def _socket_logs(caplog):
    caplog.set_level(logging.INFO, logger="hub.socket")


def test_socket_logs_its_accept_and_close_under_the_handshake_request_id(user, caplog):
    token = _token(user)
    headers = [(b"authorization", f"Token {token}".encode()), (b"x-request-id", b"ws-req-1")]

    assert _open_and_close(headers, client=["203.0.113.5", 40000]) is True

    accepted, closed = _socket_lines(caplog)
    assert accepted.getMessage() == "Socket accepted"
    assert (accepted.accepted, accepted.reason, accepted.user_id) == (True, None, user.pk)
    assert (accepted.path, accepted.client, accepted.request_id) == ("/ws/events/", "203.0.113.5", "ws-req-1")
    assert closed.getMessage() == "Socket closed (1000)"
    assert (closed.close_code, closed.user_id, closed.request_id) == (1000, user.pk, "ws-req-1")
    assert isinstance(closed.duration_ms, float) and closed.duration_ms >= 0
    formatted = "\n".join(json_formatter().format(line) for line in (accepted, closed))
    assert token not in formatted and "query-secret-value" not in formatted


def test_socket_logs_a_refusal_without_credentials_once(caplog):
    assert _open_and_close([(b"x-request-id", b"ws-req-2")]) is False

    (refused,) = _socket_lines(caplog)
    assert refused.getMessage() == "Socket refused: no valid credentials"
    assert (refused.accepted, refused.reason, refused.user_id) == (False, "no valid credentials", None)
    assert refused.request_id == "ws-req-2"


def test_socket_logs_a_refused_origin(user, caplog):
    token = _token(user)
    headers = [
        (b"authorization", f"Token {token}".encode()),
        (b"origin", b"https://elsewhere.example"),
        (b"host", b"testserver"),
    ]

    assert _open_and_close(headers) is False

    (refused,) = _socket_lines(caplog)
    assert (refused.accepted, refused.reason) == (False, "origin not allowed")
    assert token not in json_formatter().format(refused)


def test_socket_makes_a_request_id_when_the_handshake_has_no_sane_one(user, caplog):
    headers = [(b"authorization", f"Token {_token(user)}".encode()), (b"x-request-id", b"not sane\r\nid")]

    assert _open_and_close(headers) is True

    accepted, closed = _socket_lines(caplog)
    assert NEW_ID.fullmatch(accepted.request_id)
    assert closed.request_id == accepted.request_id
