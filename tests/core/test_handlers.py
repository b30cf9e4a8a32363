"""The hub's ASGI handler: the middleware and the views run as sync code,
one hop from the event loop to a thread and back for the whole request, and
at most HTTP_THREADS requests at a time."""

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.handlers.asgi import ASGIHandler

from core.handlers import SyncASGIHandler

# Django's request_started receivers, the request, the response's close.
HOPS_A_REQUEST = 3


def _scope(path):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


async def _aget(app, path):
    communicator = ApplicationCommunicator(app, _scope(path))
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    await communicator.wait(5)
    return start, body


_get = async_to_sync(_aget)


@pytest.fixture
def hops(monkeypatch):
    """The sync functions the event loop handed to a thread, in turn."""
    handed = []
    original = SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        handed.append(self.func)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return handed


def test_sync_asgi_handler_answers_through_the_whole_middleware_chain():
    start, body = _get(SyncASGIHandler(), "/no/such/page/")

    headers = {name.lower(): value for name, value in start["headers"]}
    assert start["status"] == 404
    assert b"x-request-id" in headers  # the first middleware's
    assert headers[b"x-frame-options"] == b"DENY"  # the last one's
    assert json.loads(body["body"])["error"]["code"] == "not_found"


def test_sync_asgi_handler_hops_to_a_thread_three_times_a_request_where_django_hops_a_dozen(hops):
    _get(SyncASGIHandler(), "/no/such/page/")
    ours = len(hops)
    hops.clear()
    _get(ASGIHandler(), "/no/such/page/")

    assert ours == HOPS_A_REQUEST
    assert len(hops) > 3 * HOPS_A_REQUEST


class _Counting(SyncASGIHandler):
    """Counts the requests inside at once; each takes a while."""

    def __init__(self):
        super().__init__()
        self.lock, self.inside, self.most = threading.Lock(), 0, 0

    def get_response(self, request):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.05)
        with self.lock:
            self.inside -= 1
        return super().get_response(request)


@pytest.mark.parametrize("threads", [1, 2, 6])
def test_sync_asgi_handler_runs_at_most_http_threads_requests_at_once(settings, threads):
    settings.HTTP_THREADS = threads
    handler = _Counting()

    @async_to_sync
    async def six_at_once():
        return await asyncio.gather(*(_aget(handler, "/no/such/page/") for _ in range(6)))

    answers = six_at_once()

    assert [start["status"] for start, _ in answers] == [404] * 6
    assert handler.most == threads
