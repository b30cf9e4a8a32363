"""A socket lives no longer than the credentials it opened with, and sees no
more than they do: the attacker's side of /ws/events/, in this process."""

import json
from datetime import timedelta

import pytest
import redis.asyncio
from django.conf import settings
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from core import services as core_services
from realtime import consumers, fanout
from tests.conftest import service_unavailable
from tests.factories import PASSWORD, CustomerFactory, UserFactory
from tests.realtime.test_consumer import db, drain, last_event_id, place_order, receive, run

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


def _sign_in(user):
    """(token row, key) issued to `user` as the API issues them."""
    return core_services.auth_token_create(username=user.username, password=PASSWORD)


def _header(key):
    return [(b"authorization", f"Token {key}".encode())]


@db
def _logout(key):
    response = APIClient().post("/api/v1/auth/logout/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 204


@db
def _ticket(key):
    response = APIClient().post("/api/v1/realtime/ticket/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201
    return response.json()["ticket"]


async def _ended(socket):
    """The socket says its credentials ended, then closes with 4401."""
    (error,) = await receive(socket)
    assert (error["type"], error.get("error", {}).get("code")) == ("error", "credentials_ended"), error
    close = await socket.receive_output(timeout=TIMEOUT)
    assert close == {"type": "websocket.close", "code": consumers.CLOSE_CREDENTIALS_ENDED}
    return error["error"]["message"]


@pytest.mark.parametrize("opened_with", ["token", "ticket"])
def test_logout_closes_the_sockets_of_that_token_and_no_other(user, opened_with):
    _, key = _sign_in(user)
    _, other_key = _sign_in(user)

    async def scenario(sockets):
        if opened_with == "token":
            doomed = await sockets.open(_header(key))
        else:
            doomed = await sockets.open(query=f"ticket={await _ticket(key)}")
        survivor = await sockets.open(_header(other_key))
        await _logout(key)
        assert await _ended(doomed) == "This token was revoked or expired."
        assert await survivor.receive_nothing(timeout=0.5)
        await place_order(user)
        assert [m["type"] for m in await drain(survivor)][:1] == ["order.created"]

    run(scenario)


def test_signing_out_of_the_session_closes_its_socket(staff):
    client = Client()
    client.force_login(staff)
    name = settings.SESSION_COOKIE_NAME
    cookie = [(b"cookie", f"{name}={client.cookies[name].value}".encode())]

    async def scenario(sockets):
        socket = await sockets.open(cookie)
        await db(client.post)("/admin/logout/")
        assert await _ended(socket) == "You signed out."

    run(scenario)


def test_a_socket_closes_when_its_token_expires(user):
    token, key = _sign_in(user)
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() + timedelta(seconds=1))

    async def scenario(sockets):
        socket = await sockets.open(_header(key))
        assert await _ended(socket) == "Your token expired."

    run(scenario)


@pytest.mark.parametrize("change", ["deactivated", "made staff", "deleted"])
def test_an_account_change_closes_every_socket_of_the_account(user, change):
    _, key = _sign_in(user)
    _, other_key = _sign_in(user)
    bystander = UserFactory()
    _, bystander_key = _sign_in(bystander)

    @db
    def apply():
        if change == "deleted":
            user.delete()
            return
        user.is_active = change != "deactivated"
        user.is_staff = change == "made staff"
        user.save()

    async def scenario(sockets):
        mine = [await sockets.open(_header(key)), await sockets.open(_header(other_key))]
        theirs = await sockets.open(_header(bystander_key))
        await apply()
        for socket in mine:
            await _ended(socket)
        assert await theirs.receive_nothing(timeout=0.5)

    run(scenario)


def test_a_login_of_the_same_account_leaves_its_sockets_open(user):
    """Signing in again saves the user (last_login), which changes no access."""
    _, key = _sign_in(user)

    async def scenario(sockets):
        socket = await sockets.open(_header(key))
        await db(_sign_in)(user)
        assert await socket.receive_nothing(timeout=0.5)

    run(scenario)


def test_a_resume_after_the_credentials_ended_replays_nothing(user):
    """The message that closes a socket may lag; a replay asks the database first."""
    token, key = _sign_in(user)

    async def scenario(sockets):
        socket = await sockets.open(_header(key))
        await place_order(user)
        assert await drain(socket)
        # Expired behind the hub's back: no message tells the socket.
        await db(AuthToken.objects.filter(pk=token.pk).update)(expiry=timezone.now() - timedelta(seconds=1))
        await socket.send_json_to({"action": "resume", "last_event_id": 0})
        assert await _ended(socket) == "The credentials this socket opened with no longer stand."

    run(scenario)


def test_a_ticket_whose_token_was_revoked_opens_nothing(user):
    _, key = _sign_in(user)

    async def scenario(sockets):
        ticket = await _ticket(key)
        await db(AuthToken.objects.filter(user=user).delete)()
        await sockets.open(query=f"ticket={ticket}", accepted=False)

    run(scenario)


def test_a_squatters_socket_gets_nothing_of_the_victims_orders(user):
    """Pre-squat over the socket: a record made with the victim's email brings
    its creator none of the victim's events, live or replayed."""
    victim = UserFactory()
    CustomerFactory(created_by=user, email=victim.email)
    _, key = _sign_in(user)

    async def scenario(sockets):
        start = await last_event_id()
        socket = await sockets.open(_header(key))
        await place_order(victim)
        assert await drain(socket, quiet=1.0) == []
        await socket.send_json_to({"action": "resume", "last_event_id": start})
        assert await drain(socket) == []

    run(scenario)


def test_a_sign_out_on_a_hub_of_another_redis_database_ends_no_socket_here(user):
    """Redis channels are the whole server's; a hub on another database of it
    (another deployment, another test run) is another hub."""
    if not settings.REDIS_URL:
        service_unavailable("REDIS_URL is not set")
    _, key = _sign_in(user)
    ours = fanout.redis_channel("credentials")
    theirs = ours.replace(f"hub:{ours.split(':')[1]}:", f"hub:{int(ours.split(':')[1]) + 1}:")
    ended = json.dumps([user.pk, {"token": None, "session": None, "reason": "The account changed."}])

    async def scenario(sockets):
        socket = await sockets.open(_header(key))
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        try:
            await client.publish(theirs, ended)
            assert await socket.receive_nothing(timeout=0.5)
            await client.publish(ours, ended)  # the same words, on this hub's channel
            assert await _ended(socket) == "The account changed."
        finally:
            await client.aclose()

    run(scenario)
