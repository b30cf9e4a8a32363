"""/ws/events/ end to end in this process: Channels' communicator against the
routing the server runs, with writes made through the real services so that
events are recorded and published on commit.

Each scenario runs on an event loop of its own (async_to_sync); the test's
thread serves the database calls of the consumer and of the scenario, so the
database needs `transaction=True`.
"""

import asyncio
import contextlib
import json
import types
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from core import services as core_services
from notify import inbox as notify_inbox
from notify import services as notify_services
from notify.models import InboxMessage
from orders import services as order_services
from realtime import consumers, events, fanout, selectors, services
from realtime.fanout import LiveEvent
from realtime.models import Event
from realtime.publish import serve_on_this_loop
from realtime.routing import websocket_app
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

APP = serve_on_this_loop(websocket_app)
URL = "/ws/events/"
TIMEOUT = 3


# ---- credentials ----------------------------------------------------------------------


def token_header(user):
    _, key = core_services.auth_token_create(username=user.username, password=PASSWORD)
    return [(b"authorization", f"Token {key}".encode())]


def session_cookie(user):
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={client.cookies[name].value}".encode())]


# ---- running a scenario -----------------------------------------------------------------


async def _nothing(scope, receive, send):
    pass


class Sockets:
    """Opens sockets for a scenario and closes them all at its end."""

    def __init__(self):
        self.opened = []

    async def open(self, headers=(), query="", accepted=True):
        socket = WebsocketCommunicator(APP, URL + (f"?{query}" if query else ""), headers=list(headers))
        self.opened.append(socket)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected is accepted
        return socket

    async def close_all(self):
        for socket in self.opened:
            await socket.disconnect()


def run(scenario):
    """Run `scenario(sockets)` on a fresh event loop that events publish on,
    even those committed before the first socket opens."""

    async def main():
        await serve_on_this_loop(_nothing)({"type": "websocket"}, None, None)
        sockets = Sockets()
        try:
            await scenario(sockets)
        except BaseException:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the first failure tells
                await sockets.close_all()
            raise
        await sockets.close_all()

    async_to_sync(main)()


db = database_sync_to_async


async def receive(socket, n=1):
    return [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(n)]


async def drain(socket, quiet=0.4):
    """Everything the socket sends until it has been quiet for `quiet` seconds."""
    messages = []
    while not await socket.receive_nothing(timeout=quiet):
        messages.append(await socket.receive_json_from(timeout=TIMEOUT))
    return messages


async def closed_with(socket):
    message = await socket.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close", message
    return message.get("code")


@db
def visible(user, after=0, **filters):
    """The envelopes after `after` that `user` may see, as the log holds them."""
    found = Event.objects.filter(id__gt=after, **filters).order_by("id")
    if not user.is_staff:
        found = found.filter(audience=user)
    return [event.envelope() for event in found]


@db
def last_event_id():
    return Event.objects.order_by("id").values_list("id", flat=True).last() or 0


def place_order(user):
    return db(order_services.order_create)(by=user, total_amount=Decimal("20.00"))


def change_status(order, status, by):
    return db(order_services.order_change_status)(order=order, status=status, by=by)


def assert_strictly_increasing_ids(messages):
    ids = [m["id"] for m in messages]
    assert ids == sorted(set(ids)), ids


# ---- who may connect -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["token", "ticket", "session"])
def test_token_ticket_and_session_are_accepted(user, method):
    headers, query = [], ""
    if method == "token":
        headers = token_header(user)
    elif method == "ticket":
        query = f"ticket={services.ticket_issue(user=user)}"
    else:
        headers = session_cookie(user)

    async def scenario(sockets):
        socket = await sockets.open(headers, query)
        order = await place_order(user)
        # It is this user's socket: their events reach it.
        (created,) = await receive(socket)
        assert (created["type"], created["data"]["order_id"]) == (events.ORDER_CREATED, order.pk)
        assert await drain(socket) == (await visible(user))[1:]

    run(scenario)


def test_a_ticket_opens_one_socket_only(user):
    ticket = services.ticket_issue(user=user)

    async def scenario(sockets):
        await sockets.open(query=f"ticket={ticket}")
        await sockets.open(query=f"ticket={ticket}", accepted=False)

    run(scenario)


def test_the_tickets_position_brings_what_happened_before_the_socket_opened(user, user_client):
    body = user_client.post("/api/v1/realtime/ticket/").json()

    async def scenario(sockets):
        order = await place_order(user)  # after the ticket, before the socket
        socket = await sockets.open(query=f"ticket={body['ticket']}&last_event_id={body['last_event_id']}")
        replayed = await drain(socket)
        assert replayed == await visible(user)
        assert (replayed[0]["type"], replayed[0]["data"]["order_id"]) == (events.ORDER_CREATED, order.pk)

    run(scenario)


@pytest.mark.parametrize(
    "credentials",
    [
        "none",
        "bad token",
        "empty token",
        "bearer",
        "token in the url",
        "unknown ticket",
        "bad token beside a session",
        "unknown session",
        "session from before a password change",
    ],
)
def test_sockets_without_good_credentials_are_refused(user, credentials):
    headers, query = [], ""
    if credentials == "bad token":
        headers = [(b"authorization", b"Token not-a-real-token")]
    elif credentials == "empty token":
        headers = [(b"authorization", b"Token ")]
    elif credentials == "bearer":
        key = token_header(user)[0][1].split(b" ", 1)[1]
        headers = [(b"authorization", b"Bearer " + key)]
    elif credentials == "token in the url":
        key = token_header(user)[0][1].split(b" ", 1)[1].decode()
        query = f"token={key}"  # would end up in logs: never read
    elif credentials == "unknown ticket":
        query = "ticket=not-a-ticket"
    elif credentials == "bad token beside a session":
        # A bad credential is not passed over for the next one.
        headers = [(b"authorization", b"Token not-a-real-token"), *session_cookie(user)]
    elif credentials == "unknown session":
        headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}=no-such-session-key".encode())]
    elif credentials == "session from before a password change":
        headers = session_cookie(user)
        user.set_password("another-password-entirely")
        user.save()

    async def scenario(sockets):
        await sockets.open(headers, query, accepted=False)

    run(scenario)


@pytest.mark.parametrize("method", ["token", "ticket", "session"])
def test_an_inactive_user_is_refused(user, method):
    headers, query = [], ""
    if method == "token":
        headers = token_header(user)
    elif method == "ticket":
        query = f"ticket={services.ticket_issue(user=user)}"
    else:
        headers = session_cookie(user)
    user.is_active = False
    user.save()

    async def scenario(sockets):
        await sockets.open(headers, query, accepted=False)

    run(scenario)


def test_a_revoked_token_is_refused(user):
    headers = token_header(user)
    AuthToken.objects.filter(user=user).delete()

    async def scenario(sockets):
        await sockets.open(headers, accepted=False)

    run(scenario)


@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        (None, b"localhost:8000", True),
        (b"http://localhost:8000", b"localhost:8000", True),
        (b"https://hub.example.com", b"hub.example.com", True),
        (b"https://evil.example", b"localhost:8000", False),
        (b"http://localhost:8001", b"localhost:8000", False),
        (b"null", b"localhost:8000", False),
    ],
)
@pytest.mark.parametrize("method", ["token", "session"])
def test_only_pages_of_this_host_may_open_a_socket(user, origin, host, accepted, method):
    headers = [(b"host", host), *(token_header(user) if method == "token" else session_cookie(user))]
    if origin is not None:
        headers.append((b"origin", origin))

    async def scenario(sockets):
        await sockets.open(headers, accepted=accepted)

    run(scenario)


def test_a_trusted_origin_may_open_a_socket(user, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
    headers = [(b"host", b"api.example.com"), *session_cookie(user)]

    async def scenario(sockets):
        await sockets.open([*headers, (b"origin", b"https://app.example.com")])
        await sockets.open([*headers, (b"origin", b"https://other.example.com")], accepted=False)

    run(scenario)


def test_a_refused_origin_does_not_use_up_the_ticket(user):
    ticket = services.ticket_issue(user=user)
    foreign = [(b"host", b"localhost"), (b"origin", b"https://evil.example")]

    async def scenario(sockets):
        await sockets.open(foreign, query=f"ticket={ticket}", accepted=False)
        await sockets.open(query=f"ticket={ticket}")

    run(scenario)


# ---- live events -----------------------------------------------------------------------


def test_owner_and_staff_get_an_orders_events_live_and_no_one_else(user, other_user, staff):
    credentials = [token_header(user), token_header(staff), token_header(other_user)]

    async def scenario(sockets):
        owner, staff_socket, other = [await sockets.open(headers) for headers in credentials]

        order = await place_order(user)
        mine = await drain(owner)
        assert [m["type"] for m in mine] == [
            events.ORDER_CREATED,
            *[events.NOTIFICATION_CREATED] * 3,  # email, Telegram, the user's inbox
        ]
        first = mine[0]
        assert set(first) == {"id", "type", "ts", "data"}
        assert first["data"]["order_id"] == order.pk and first["data"]["status"] == "pending"
        datetime.fromisoformat(first["ts"])
        assert mine == await visible(user)
        assert await drain(staff_socket) == mine

        await change_status(order, "confirmed", staff)
        await db(order_services.order_delete)(order=order, by=staff)
        later = await drain(owner)
        assert [m["type"] for m in later] == [
            events.ORDER_STATUS_CHANGED,
            *[events.NOTIFICATION_CREATED] * 3,
            events.ORDER_DELETED,
        ]
        assert later[0]["data"]["old_status"] == "pending" and later[0]["data"]["new_status"] == "confirmed"
        assert later[-1]["data"] == {"order_id": order.pk, "order_number": order.order_number}
        assert later == await visible(user, after=mine[-1]["id"])
        assert await drain(staff_socket) == later

        assert await drain(other, quiet=0.2) == []

    run(scenario)


def test_staff_get_everyones_events(staff):
    buyers = [UserFactory(), UserFactory()]
    headers = token_header(staff)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        for buyer in buyers:
            await place_order(buyer)
        received = await drain(socket)
        assert received == await visible(staff)
        assert len([m for m in received if m["type"] == events.ORDER_CREATED]) == 2

    run(scenario)


# ---- client messages -------------------------------------------------------------------


def test_ping_gets_pong(user):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_json_to({"action": "ping"})
        (pong,) = await receive(socket)
        assert pong["type"] == "pong"
        datetime.fromisoformat(pong["ts"])

    run(scenario)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"action": "dance"}', "unknown_action"),
        ("{}", "unknown_action"),
        ('{"action": null}', "unknown_action"),
        ("hello", "bad_message"),
        ('["ping"]', "bad_message"),
        ('"ping"', "bad_message"),
        ("{bad json", "bad_message"),
    ],
)
def test_a_message_the_server_cannot_act_on_gets_an_error_and_the_socket_stays(user, text, code):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_to(text_data=text)
        (error,) = await receive(socket)
        assert error["type"] == "error"
        assert error["error"]["code"] == code and error["error"]["message"]
        await socket.send_json_to({"action": "ping"})
        assert (await receive(socket))[0]["type"] == "pong"

    run(scenario)


async def _send_refused(**message):
    raise ConnectionError("Attempt to send on a closed protocol")  # as an ASGI server says it


@pytest.mark.parametrize("server", ["asgi", "daphne"])
def test_a_socket_whose_connection_went_before_its_disconnect_costs_the_others_nothing(staff, caplog, server):
    headers = token_header(staff)

    async def scenario(sockets):
        first, second = await sockets.open(headers), await sockets.open(headers)
        broken = next(iter(fanout._sockets().staff))
        if server == "asgi":
            broken.send = _send_refused
        else:  # Daphne's connection, written to directly, closing
            broken.protocol = types.SimpleNamespace(STATE_OPEN=1, state=2)
        await place_order(staff)
        received = sorted([len(await drain(first)), len(await drain(second))])
        # The other socket got the batch; the broken one nothing, and the batch did not fail.
        assert received[0] == 0 and received[1] == len(await visible(staff)) > 0
        assert "not handed to the sockets" not in caplog.text

    run(scenario)


class _Transport:
    """Twisted's TCP transport, as far as _write_now uses it: a kernel that takes `room` bytes."""

    TLS, connected = False, True

    def __init__(self, room):
        self.room, self.wire, self.dataBuffer, self._tempDataBuffer = room, b"", b"", []

    def writeSomeData(self, data):
        sent = bytes(data[: self.room])
        self.wire, self.room = self.wire + sent, self.room - len(sent)
        return len(sent)

    def write(self, data):  # buffered, written at the loop's next turn
        self._tempDataBuffer.append(data)


def test_a_frame_goes_to_the_kernel_at_once_and_what_it_cannot_take_waits_in_order():
    transport = _Transport(room=10)
    consumers._write_now(transport, b"first")
    assert (transport.wire, transport._tempDataBuffer) == (b"first", [])
    consumers._write_now(transport, b"second")  # half of it fits
    assert (transport.wire, transport._tempDataBuffer) == (b"firstsecon", [b"d"])
    transport.room = 100
    consumers._write_now(transport, b"third")  # behind what waits, not before it
    assert (transport.wire, transport._tempDataBuffer) == (b"firstsecon", [b"d", b"third"])


def test_subscribe_narrows_by_type(user, staff):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_json_to({"action": "subscribe", "types": [events.ORDER_STATUS_CHANGED]})
        assert await receive(socket) == [{"type": "subscribed", "types": [events.ORDER_STATUS_CHANGED], "order": None}]

        order = await place_order(user)
        await change_status(order, "confirmed", staff)
        received = await drain(socket)
        assert received == await visible(user, type=events.ORDER_STATUS_CHANGED)
        assert len(received) == 1

        # An empty subscription takes the narrowing away.
        await socket.send_json_to({"action": "subscribe"})
        assert await receive(socket) == [{"type": "subscribed", "types": None, "order": None}]
        after = await last_event_id()
        await change_status(order, "shipped", staff)
        received = await drain(socket)
        assert received == await visible(user, after=after)
        assert {m["type"] for m in received} == {events.ORDER_STATUS_CHANGED, events.NOTIFICATION_CREATED}

    run(scenario)


def test_subscribe_narrows_by_order(user, staff):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        one, two = await place_order(user), await place_order(user)
        await drain(socket)
        after = await last_event_id()

        await socket.send_json_to({"action": "subscribe", "order": two.pk})
        assert await receive(socket) == [{"type": "subscribed", "types": None, "order": two.pk}]
        await change_status(one, "confirmed", staff)
        await change_status(two, "confirmed", staff)
        received = await drain(socket)
        assert received == await visible(user, after=after, data__order_id=two.pk)
        assert len(received) == 4  # the status change and its three notifications

        await socket.send_json_to(
            {"action": "subscribe", "order": one.pk, "types": [events.ORDER_STATUS_CHANGED, events.ORDER_DELETED]}
        )
        await receive(socket)
        await change_status(two, "shipped", staff)
        await change_status(one, "shipped", staff)
        (only,) = await drain(socket)
        assert (only["type"], only["data"]["order_id"]) == (events.ORDER_STATUS_CHANGED, one.pk)

    run(scenario)


@pytest.mark.parametrize(
    "subscription",
    [
        {"types": "order.created"},
        {"types": []},
        {"types": ["order.created", "order.exploded"]},
        {"types": [1]},
        {"order": "5"},
        {"order": 0},
        {"order": -3},
        {"order": 1.5},
        {"order": True},
    ],
)
def test_a_bad_subscription_gets_an_error_and_changes_nothing(user, subscription):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_json_to({"action": "subscribe", "types": [events.ORDER_CREATED]})
        await receive(socket)

        await socket.send_json_to({"action": "subscribe", **subscription})
        (error,) = await receive(socket)
        assert (error["type"], error["error"]["code"]) == ("error", "bad_subscription")

        await place_order(user)  # the earlier subscription still holds
        assert [m["type"] for m in await drain(socket)] == [events.ORDER_CREATED]

    run(scenario)


# Daphne lets an application close with 1000 or 3000-4999 only (1009 and 1003
# would reach the client as 1011): the consumer's codes must be of those.
def _sendable_close_code(code):
    return code == 1000 or 3000 <= code <= 4999


def test_close_codes_are_distinct_and_sendable():
    codes = [consumers.CLOSE_TOO_BIG, consumers.CLOSE_UNSUPPORTED, consumers.CLOSE_RATE_LIMITED]
    assert len(set(codes)) == 3
    assert all(_sendable_close_code(code) for code in codes), codes
    assert codes == [4009, 4003, 4429]  # docs/realtime.md, "Limits and close codes"


def test_a_message_over_4096_bytes_closes_the_socket(user):
    headers = token_header(user)
    at_limit = json.dumps({"action": "ping", "pad": ""})
    at_limit = json.dumps({"action": "ping", "pad": "x" * (4096 - len(at_limit))})
    assert len(at_limit.encode()) == 4096
    # Fewer than 4096 characters, more than 4096 bytes.
    over = json.dumps({"action": "ping", "pad": "é" * 2100}, ensure_ascii=False)
    assert len(over) < 4096 < len(over.encode())

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_to(text_data=at_limit)
        assert (await receive(socket))[0]["type"] == "pong"

        await socket.send_to(text_data=over)
        (error,) = await receive(socket)
        assert error["error"]["code"] == "bad_message"
        assert await closed_with(socket) == consumers.CLOSE_TOO_BIG

    run(scenario)


def test_a_binary_message_closes_the_socket(user):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_to(bytes_data=b'{"action": "ping"}')
        (error,) = await receive(socket)
        assert error["error"]["code"] == "bad_message"
        assert await closed_with(socket) == consumers.CLOSE_UNSUPPORTED

    run(scenario)


def test_more_messages_than_the_rate_limit_close_the_socket_with_4429(user):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        for _ in range(consumers.RATE_BURST + 1):
            await socket.send_json_to({"action": "ping"})
        pongs = await receive(socket, consumers.RATE_BURST)
        assert {m["type"] for m in pongs} == {"pong"}
        (error,) = await receive(socket)
        assert (error["type"], error["error"]["code"]) == ("error", "rate_limited")
        assert await closed_with(socket) == 4429

    run(scenario)


def test_the_rate_limit_refills_over_time(user):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        for _ in range(consumers.RATE_BURST):
            await socket.send_json_to({"action": "ping"})
        await receive(socket, consumers.RATE_BURST)
        await asyncio.sleep(1.5 / consumers.RATE_PER_SECOND)  # one and a half messages' worth
        await socket.send_json_to({"action": "ping"})
        assert (await receive(socket))[0]["type"] == "pong"
        await socket.send_json_to({"action": "ping"})
        assert (await receive(socket))[0]["error"]["code"] == "rate_limited"
        assert await closed_with(socket) == 4429

    run(scenario)


# ---- resuming --------------------------------------------------------------------------


def test_connecting_with_last_event_id_replays_what_followed_then_goes_live(user, other_user, staff):
    user_headers, staff_headers = token_header(user), token_header(staff)

    async def scenario(sockets):
        order = await place_order(user)
        seen = (await visible(user))[0]["id"]  # the client had the order's creation
        await place_order(other_user)  # not the user's to see
        await change_status(order, "confirmed", staff)

        socket = await sockets.open(user_headers, query=f"last_event_id={seen}")
        staff_socket = await sockets.open(staff_headers, query=f"last_event_id={seen}")
        replayed = await drain(socket)
        assert replayed == await visible(user, after=seen)
        assert len(replayed) == 7  # 3 notifications, the status change and its 3 notifications
        assert await drain(staff_socket) == await visible(staff, after=seen)

        await change_status(order, "shipped", staff)
        received = replayed + await drain(socket)
        assert_strictly_increasing_ids(received)
        assert received == await visible(user, after=seen)
        assert len(received) == 11

    run(scenario)


@pytest.mark.parametrize("when", ["before the first read", "after the last read"])
def test_events_committed_during_the_replay_arrive_once(user, staff, monkeypatch, when):
    """Before the first read the replay has the change and its live copies
    are dropped; after the last read only the layer has it."""
    headers = token_header(user)
    real_events_after = consumers.events_after
    order, committed = [], []

    def change_the_order():
        committed.append(order_services.order_change_status(order=order[0], status="confirmed", by=staff))

    def events_after_while_the_order_changes(**kwargs):
        if when == "before the first read" and not committed:
            change_the_order()
        found = real_events_after(**kwargs)
        if when == "after the last read" and not found and not committed:
            change_the_order()
        return found

    monkeypatch.setattr(consumers, "events_after", events_after_while_the_order_changes)

    async def scenario(sockets):
        order.append(await place_order(user))
        seen = (await visible(user))[0]["id"]  # the client had the order's creation

        socket = await sockets.open(headers, query=f"last_event_id={seen}")
        received = await drain(socket)
        assert committed
        assert_strictly_increasing_ids(received)
        assert [m["type"] for m in received] == [
            *[events.NOTIFICATION_CREATED] * 3,
            events.ORDER_STATUS_CHANGED,
            *[events.NOTIFICATION_CREATED] * 3,
        ]

        await change_status(order[0], "shipped", staff)  # and live ones still come
        received += await drain(socket)
        assert_strictly_increasing_ids(received)
        assert received == await visible(user, after=seen)

    run(scenario)


@pytest.mark.parametrize("as_text", [False, True], ids=["number", "string of digits"])
def test_the_resume_message_replays_what_followed_then_goes_live(user, staff, as_text):
    headers = token_header(user)

    async def scenario(sockets):
        order = await place_order(user)
        seen = (await visible(user))[0]["id"]
        await change_status(order, "confirmed", staff)

        socket = await sockets.open(headers)
        assert await drain(socket, quiet=0.2) == []  # nothing replayed unasked

        await socket.send_json_to({"action": "resume", "last_event_id": str(seen) if as_text else seen})
        replayed = await drain(socket)
        assert replayed == await visible(user, after=seen)
        assert len(replayed) == 7

        await change_status(order, "shipped", staff)
        received = replayed + await drain(socket)
        assert_strictly_increasing_ids(received)
        assert received == await visible(user, after=seen)

        # Resuming again from the newest id replays nothing.
        await socket.send_json_to({"action": "resume", "last_event_id": received[-1]["id"]})
        assert await drain(socket, quiet=0.2) == []

    run(scenario)


def test_a_resume_replays_only_what_the_subscription_wants(user, staff):
    headers = token_header(user)

    async def scenario(sockets):
        order = await place_order(user)
        seen = await last_event_id()
        await change_status(order, "confirmed", staff)

        socket = await sockets.open(headers)
        await socket.send_json_to({"action": "subscribe", "types": [events.ORDER_STATUS_CHANGED]})
        await receive(socket)
        await socket.send_json_to({"action": "resume", "last_event_id": seen})
        assert await drain(socket) == await visible(user, after=seen, type=events.ORDER_STATUS_CHANGED)

    run(scenario)


def test_last_event_id_0_replays_the_whole_log_and_an_empty_one_nothing(user, other_user, staff):
    headers = token_header(user)

    async def scenario(sockets):
        order = await place_order(user)
        await place_order(other_user)
        await change_status(order, "confirmed", staff)

        everything = await sockets.open(headers, query="last_event_id=0")
        assert await drain(everything) == await visible(user)
        assert len(await visible(user)) == 8
        nothing = await sockets.open(headers, query="last_event_id=")
        assert await drain(nothing, quiet=0.2) == []

    run(scenario)


@pytest.mark.parametrize("how", ["query", "message"])
def test_resuming_from_before_what_was_pruned_requires_a_resync(user, staff, settings, how):
    settings.REALTIME_EVENT_RETENTION_DAYS = 7
    headers = token_header(user)

    @db
    def prune_the_oldest():
        oldest = Event.objects.order_by("id").first()
        Event.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(days=8))
        assert services.events_prune() == 1
        return oldest.pk

    async def scenario(sockets):
        order = await place_order(user)
        await change_status(order, "confirmed", staff)
        pruned = await prune_the_oldest()
        since = pruned - 1

        if how == "query":
            socket = await sockets.open(headers, query=f"last_event_id={since}")
        else:
            socket = await sockets.open(headers)
            await socket.send_json_to({"action": "resume", "last_event_id": since})
        (resync,) = await drain(socket)
        assert resync["type"] == "resync_required" and resync["id"] is None
        assert resync["data"]["last_event_id"] == since and resync["data"]["reason"]
        datetime.fromisoformat(resync["ts"])

        # From the oldest id still kept, the log has all that followed.
        await socket.send_json_to({"action": "resume", "last_event_id": pruned})
        assert await drain(socket) == await visible(user, after=pruned)

    run(scenario)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "%205", "0x10"])
def test_a_bad_last_event_id_in_the_query_gets_an_error(user, value):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers, query=f"last_event_id={value}")
        (error,) = await receive(socket)
        assert (error["type"], error["error"]["code"]) == ("error", "bad_last_event_id")
        await socket.send_json_to({"action": "ping"})
        assert (await receive(socket))[0]["type"] == "pong"

    run(scenario)


@pytest.mark.parametrize("value", ["abc", -1, "-1", None, [], {}, 1.5, 2.0, True, "1.5"])
def test_a_bad_last_event_id_in_a_resume_gets_an_error(user, value):
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        await socket.send_json_to({"action": "resume", "last_event_id": value})
        (error,) = await receive(socket)
        assert (error["type"], error["error"]["code"]) == ("error", "bad_last_event_id")

    run(scenario)


# ---- live events lost on the way ---------------------------------------------------------


@db
def logged(n, audience=(), private=False):
    """`n` events in the log, not published: the live events for them are the
    test's to hand to the fan-out, or to lose."""
    first = selectors.events_position() + 1
    made = [
        Event.objects.create(id=first + i, type=events.ORDER_CREATED, data={"order_id": None}, private=private)
        for i in range(n)
    ]
    for event in made:
        event.audience.set(audience)
    return made


def live(event):
    """The relay's LiveEvent for `event`."""
    audience = list(event.audience.values_list("pk", flat=True))
    envelope = json.dumps(event.envelope())
    return LiveEvent(event.pk, event.type, event.data.get("order_id"), audience, envelope, event.private)


async def publish(*batches):
    """Hand batches to this process's fan-out, as the relay does in embedded mode."""
    for batch in batches:
        fanout.events_publish(await db(lambda events: [live(e) for e in events])(batch))
    await asyncio.sleep(0.05)


def test_events_lost_on_the_way_are_read_from_the_log(user, staff, caplog):
    staff_headers, user_headers = token_header(staff), token_header(user)

    async def scenario(sockets):
        staff_socket, user_socket = await sockets.open(staff_headers), await sockets.open(user_headers)
        a, b, c, d = await logged(4, audience=[user])
        await publish([a], [d])  # b and c never come

        for socket in (staff_socket, user_socket):
            assert await receive(socket, 4) == [a.envelope(), b.envelope(), c.envelope(), d.envelope()]
            assert await drain(socket) == []  # no resync, no repeat

    run(scenario)
    lines = [r for r in caplog.records if r.name == "hub.socket" and "from the log" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelname == "WARNING" for r in lines)


def test_a_socket_outside_the_audience_of_what_was_lost_reads_the_log_too(user, other_user):
    """It cannot know what it missed: the log says (here, its own event)."""
    mine_headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(mine_headers)
        (first,) = await logged(1, audience=[user])
        await publish([first])
        assert await receive(socket) == [first.envelope()]
        (lost,) = await logged(1, audience=[user])
        (theirs,) = await logged(1, audience=[other_user])
        await publish([theirs])  # `lost` never came

        assert await receive(socket) == [lost.envelope()]
        assert await drain(socket) == []

    run(scenario)


def test_a_private_event_reaches_its_audience_alone_live_or_read_after_a_loss(user, staff):
    staff_headers, user_headers = token_header(staff), token_header(user)

    async def scenario(sockets):
        staff_socket, user_socket = await sockets.open(staff_headers), await sockets.open(user_headers)
        (shared,) = await logged(1, audience=[user])
        (private,) = await logged(1, audience=[user], private=True)
        await publish([shared, private])
        assert await receive(user_socket, 2) == [shared.envelope(), private.envelope()]
        assert await drain(staff_socket) == [shared.envelope()]

        lost, last = await logged(2, audience=[user], private=True)
        (after,) = await logged(1, audience=[user])
        await publish([after])  # the private ones never came: each socket reads the log
        assert await receive(user_socket, 3) == [lost.envelope(), last.envelope(), after.envelope()]
        assert await drain(staff_socket) == [after.envelope()]
        assert await drain(user_socket) == []

    run(scenario)


def test_a_live_event_sent_already_from_the_log_is_dropped(staff):
    headers = token_header(staff)

    async def scenario(sockets):
        a, b = await logged(2)
        socket = await sockets.open(headers, query="last_event_id=0")
        assert await receive(socket, 2) == [a.envelope(), b.envelope()]  # from the log
        await publish([a, b])  # then live

        assert await drain(socket) == []

    run(scenario)


def test_live_events_that_come_during_a_replay_follow_it_in_order(staff):
    headers = token_header(staff)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        old = await logged(600)  # a replay of more than one read
        await socket.send_json_to({"action": "resume", "last_event_id": 0})
        new = await logged(2)
        await publish(new)

        received = await receive(socket, 602)
        assert [m["id"] for m in received] == [e.pk for e in old + new]

    run(scenario)


def test_a_rolled_back_order_costs_the_sockets_nothing(user, staff):
    user_headers, staff_headers = token_header(user), token_header(staff)

    @db
    def place_an_order_that_rolls_back():
        with contextlib.suppress(RuntimeError), transaction.atomic():
            order_services.order_create(by=user, total_amount=Decimal("1.00"))
            raise RuntimeError

    async def scenario(sockets):
        socket, staff_socket = await sockets.open(user_headers), await sockets.open(staff_headers)
        await place_order(user)
        before = await last_event_id()
        await place_an_order_that_rolls_back()
        await place_order(user)

        for who, listening in ((user, socket), (staff, staff_socket)):
            received = await drain(listening)
            assert "resync_required" not in [m["type"] for m in received]
            assert received == await visible(who)
            assert received[-1]["id"] > before
        assert await db(lambda: list(Event.objects.values_list("id", flat=True)))() == list(range(1, before + 5))

    run(scenario)


# ---- heartbeats ------------------------------------------------------------------------


def test_an_idle_socket_gets_heartbeats(user, settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    headers = token_header(user)

    async def scenario(sockets):
        socket = await sockets.open(headers)
        beats = await receive(socket, 2)
        assert [b["type"] for b in beats] == ["heartbeat", "heartbeat"]
        assert set(beats[0]) == {"type", "ts"}
        assert datetime.fromisoformat(beats[0]["ts"]) <= datetime.fromisoformat(beats[1]["ts"])

    run(scenario)


def test_a_process_beats_all_its_sockets_at_once(user, staff, settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.3
    headers, staff_headers = token_header(user), token_header(staff)

    async def scenario(sockets):
        first = await sockets.open(headers)
        await asyncio.sleep(0.1)
        second = await sockets.open(staff_headers)
        (beat,) = await receive(first)
        assert beat["type"] == "heartbeat"
        assert await receive(second) == [beat]  # the same beat, sent once for all

    run(scenario)


# ---- an inbox's events: its owner's sockets alone -----------------------------------------------


def _in_app(sender, recipient):
    """An in_app notification from `sender` to `recipient`, sent and delivered: its inbox message."""
    notification, _ = notify_services.notification_send(
        sender=sender, channel="in_app", recipient=recipient.username, title="Hi", message="Body"
    )
    notify_services.notifications_deliver(notification_ids=[notification.pk])
    return InboxMessage.objects.get(notification=notification)


def test_an_inbox_reaches_every_socket_of_its_owner_and_no_one_elses(user, other_user, staff):
    headers = [token_header(user), token_header(user), token_header(other_user), token_header(staff)]
    inbox_types = {events.INBOX_MESSAGE_CREATED, events.INBOX_MESSAGE_CHANGED, events.INBOX_COUNTS_CHANGED}

    async def scenario(sockets):
        tab, phone, other, staff_socket = [await sockets.open(h) for h in headers]

        message = await db(_in_app)(other_user, user)
        on_tab = await drain(tab)
        assert [m["type"] for m in on_tab if m["type"] in inbox_types] == [
            events.INBOX_MESSAGE_CREATED,
            events.INBOX_COUNTS_CHANGED,
        ]
        created = next(m for m in on_tab if m["type"] == events.INBOX_MESSAGE_CREATED)
        assert created["data"]["id"] == message.pk and created["data"]["read_at"] is None
        assert await drain(phone) == on_tab
        # The sender sees its ledger row move, and staff every ledger row, but neither the inbox.
        assert {m["type"] for m in await drain(other)} & inbox_types == set()
        staff_got = await drain(staff_socket)
        assert events.NOTIFICATION_STATUS_CHANGED in {m["type"] for m in staff_got}
        assert {m["type"] for m in staff_got} & inbox_types == set()

        # Read all on one device: the other follows at once.
        await db(notify_inbox.inbox_mark_all)(user=user, state="read")
        (on_phone,) = await drain(phone)
        assert on_phone["type"] == events.INBOX_COUNTS_CHANGED
        assert (on_phone["data"]["unseen"], on_phone["data"]["unread"]) == (0, 0)
        assert on_phone["data"]["marked_all"]["state"] == "read"
        assert await drain(tab) == [on_phone]
        assert await drain(other, quiet=0.2) == [] and await drain(staff_socket, quiet=0.2) == []

        # A staff user's own inbox is theirs like anyone's.
        await db(_in_app)(user, staff)
        assert events.INBOX_MESSAGE_CREATED in {m["type"] for m in await drain(staff_socket)}
        assert {m["type"] for m in await drain(tab)} & inbox_types == set()

    run(scenario)


def test_a_resume_replays_only_the_users_own_inbox(user, other_user, staff):
    headers = [token_header(staff), token_header(other_user)]

    async def scenario(sockets):
        await db(_in_app)(other_user, user)
        await db(_in_app)(user, staff)
        staff_socket, other = [await sockets.open(h, query="last_event_id=0") for h in headers]

        replayed = await drain(staff_socket)
        private = [m for m in replayed if m["type"].startswith("inbox.")]
        assert len(private) == 2 and private[0]["data"]["id"] == (await db(InboxMessage.objects.get)(user=staff)).pk
        assert {m["type"] for m in await drain(other)} == {
            events.NOTIFICATION_CREATED,
            events.NOTIFICATION_STATUS_CHANGED,
        }

    run(scenario)
