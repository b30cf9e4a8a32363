"""Hands messages to the channel layer from any thread, in order.

Every process publishes on one event loop: the loop its sockets live on when
it is the web server (the in-memory layer of embedded mode is not
thread-safe, and channels-redis keeps its connections per loop), otherwise a
private loop in a daemon thread. Either way one task drains a queue, so a
thread that commits never opens a loop or a Redis connection of its own, and
a process's events leave in the order it committed them.

Live events take their own way (realtime.fanout); the channel layer carries
the messages that end a user's sockets.
"""

import asyncio
import logging
import threading
import weakref

import redis
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

_server_loop = None
_private_loop = None
_private_lock = threading.Lock()
_queues = weakref.WeakKeyDictionary()  # loop -> asyncio.Queue; touched only on that loop


def serve_on_this_loop(app):
    """ASGI middleware: this process's sockets live on the loop it runs on, so publish there."""

    async def app_on_loop(scope, receive, send):
        global _server_loop
        _server_loop = asyncio.get_running_loop()
        return await app(scope, receive, send)

    return app_on_loop


def _loop():
    global _private_loop
    if _server_loop is not None and not _server_loop.is_closed():
        return _server_loop
    with _private_lock:
        if _private_loop is None:
            _private_loop = asyncio.new_event_loop()
            threading.Thread(target=_private_loop.run_forever, name="hub-publisher", daemon=True).start()
    return _private_loop


def loop_call(callback, *args):
    """Run `callback(*args)` soon on the loop this process publishes on; returns at once."""
    _loop().call_soon_threadsafe(callback, *args)


def publish(messages):
    """Queue [(group, message), ...] for the channel layer; returns at once."""
    loop = _loop()
    loop.call_soon_threadsafe(_enqueue, loop, messages)


def _enqueue(loop, messages):
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = asyncio.Queue()
        loop.create_task(_drain(queue), name="hub-publisher-drain")
    queue.put_nowait(messages)


async def _drain(queue):
    layer = get_channel_layer()
    while True:
        messages = await queue.get()
        try:
            for group, message in messages:
                await _group_send(layer, group, message)
        except Exception:
            logger.exception("Could not publish channel-layer messages")


async def _group_send(layer, group, message):
    try:
        await layer.group_send(group, message)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        # Once more, over a fresh connection: an idle one may have timed out.
        await layer.group_send(group, message)
