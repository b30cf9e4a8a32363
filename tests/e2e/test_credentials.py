"""Credentials end to end in services mode: sockets on two Daphne processes
closed within a second of a logout, an expiry or a deactivation; the
verification mail received by a real SMTP server, its code good once."""

import json
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from knox.models import AuthToken
from websockets.exceptions import ConnectionClosed

from notify.models import Notification, NotificationKind, NotificationStatus
from realtime.consumers import CLOSE_CREDENTIALS_ENDED
from tests.e2e.conftest import events_socket, token_for, wait_until
from tests.factories import UserFactory
from tests.fakes import free_port
from tests.helpers import SEED_USER, verification_code

pytestmark = pytest.mark.e2e

WITHIN_SECONDS = 1.0


def _socket(url, token):
    ws = events_socket(url, token)
    ws.ping().wait(5)  # open and answering before the test goes on
    return ws


def _close_code(ws, timeout):
    """The code the server closed `ws` with, and the messages before it."""
    messages, deadline = [], time.monotonic() + timeout
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            messages.append(json.loads(ws.recv(timeout=remaining)))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None, messages
    except TimeoutError:
        pass
    raise AssertionError(f"still open after {timeout} s; it sent {messages}")


@pytest.fixture
def two_webs(services_hub):
    """The hub's Daphne and a second one on its own port, both on the same Redis and database."""
    second = services_hub.start_web(name="web2", port=free_port())
    return services_hub.url, second


def _assert_all_closed_by(sockets, moment):
    for ws in sockets:
        code, messages = _close_code(ws, timeout=moment + WITHIN_SECONDS + 5 - time.monotonic())
        assert code == CLOSE_CREDENTIALS_ENDED
        assert [m["error"]["code"] for m in messages if m["type"] == "error"] == ["credentials_ended"]
        # When it closed, as this side saw it.
        assert time.monotonic() - moment <= WITHIN_SECONDS + 0.2, "closed too late"


def test_logout_on_one_process_closes_the_tokens_sockets_on_both(two_webs):
    first, second = two_webs
    user = UserFactory()
    token, other = token_for(first, user), token_for(first, user)
    doomed = [_socket(first, token), _socket(second, token)]
    survivor = _socket(second, other)

    r = httpx.post(f"{first}/api/v1/auth/logout/", headers={"Authorization": f"Token {token}"})
    assert r.status_code == 204
    moment = time.monotonic()

    _assert_all_closed_by(doomed, moment)
    survivor.ping().wait(2)  # still open
    survivor.close()


def test_an_expiring_token_closes_its_sockets_on_both_processes(two_webs):
    first, second = two_webs
    user = UserFactory()
    _, token = AuthToken.objects.create(user=user, expiry=timedelta(seconds=4))
    sockets = [_socket(first, token), _socket(second, token)]
    expiry = AuthToken.objects.get(user=user).expiry
    moment = time.monotonic() + max(0.0, (expiry - timezone.now()).total_seconds())

    _assert_all_closed_by(sockets, moment)


def test_deactivating_the_account_closes_its_sockets_on_both_processes(two_webs):
    first, second = two_webs
    user = UserFactory()
    sockets = [_socket(first, token_for(first, user)), _socket(second, token_for(second, user))]

    user.is_active = False
    user.save()  # as the admin does, in a process of its own
    moment = time.monotonic()

    _assert_all_closed_by(sockets, moment)


def test_the_verification_mail_reaches_a_real_smtp_server_and_its_code_works_once(services_hub):
    url, sink = services_hub.url, services_hub.sink
    payload = {**SEED_USER, "username": "verify_me", "email": "verify.me@example.com"}
    assert httpx.post(f"{url}/api/v1/auth/register/", json=payload).status_code == 201

    wait_until(lambda: any(m["to"] == ["verify.me@example.com"] for m in sink.messages), 30, what="the mail")
    (mail,) = [m["message"] for m in sink.messages if m["to"] == ["verify.me@example.com"]]
    assert mail["Subject"] == "Verify your email for verify_me"
    code = verification_code(mail.get_body(("plain",)).get_content())
    row = Notification.objects.get(kind=NotificationKind.EMAIL_VERIFICATION)
    wait_until(lambda: Notification.objects.get(pk=row.pk).status == NotificationStatus.SENT, 10, what="sent")

    first = httpx.post(f"{url}/api/v1/auth/verify/", json={"code": code})
    again = httpx.post(f"{url}/api/v1/auth/verify/", json={"code": code})

    assert (first.status_code, first.json()["email_verified"]) == (200, True)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "invalid_code")
    token = httpx.post(f"{url}/api/v1/auth/token/", json={"username": "verify_me", "password": payload["password"]})
    check = httpx.get(f"{url}/api/v1/auth/token/check/", headers={"Authorization": f"Token {token.json()['token']}"})
    assert check.json()["user"]["email_verified"] is True
