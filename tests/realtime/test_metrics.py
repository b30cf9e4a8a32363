"""Open sockets on /ws/events/ as /metrics reports them: this process's count in
embedded mode; in services mode the sum of every live process's count in Redis,
where a process that died stops counting once its count goes stale."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from core import metrics
from core.redis import redis_client
from core.services import auth_token_create
from realtime.publish import serve_on_this_loop
from realtime.routing import websocket_app
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

APP = serve_on_this_loop(websocket_app)
TIMEOUT = 5


def _headers(user=None):
    if user is None:
        return [(b"authorization", b"Token not-a-token")]
    _, key = auth_token_create(username=user.username, password=PASSWORD)
    return [(b"authorization", f"Token {key}".encode())]


async def _open(headers):
    socket = WebsocketCommunicator(APP, "/ws/events/", headers=headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    return socket, connected


async def _eventually(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_metrics_count_the_open_sockets_of_this_process(user, settings, metrics_store):
    settings.REDIS_URL = ""
    accepted, refused = _headers(user), _headers()

    before = metrics.snapshot().sockets  # sockets other tests of this process left open, if any

    async def scenario():
        socket, connected = await _open(accepted)
        assert connected
        rejected, connected = await _open(refused)
        assert not connected
        assert metrics.snapshot().sockets == before + 1
        await socket.disconnect()
        await rejected.disconnect()
        assert metrics.snapshot().sockets == before

    async_to_sync(scenario)()


def test_metrics_sum_the_fresh_socket_counts_of_every_process(user, redis_url, metrics_store):
    client = redis_client(redis_url)
    client.hset(metrics.SOCKETS_KEY, "other-host:7", f"2 {time.time()}")
    dead = time.time() - metrics.SOCKETS_STALE_SECONDS - 1
    client.hset(metrics.SOCKETS_KEY, "gone-host:9", f"5 {dead}")  # SIGKILLed with five sockets open
    headers = _headers(user)

    async def scenario():
        socket, connected = await _open(headers)
        assert connected
        await _eventually(lambda: metrics.snapshot().sockets == 3, "this socket counted beside the other process's")
        assert client.hexists(metrics.SOCKETS_KEY, "gone-host:9") == 0
        await socket.disconnect()
        await _eventually(lambda: metrics.snapshot().sockets == 2, "this process's count to go")

    async_to_sync(scenario)()
