"""Redis PUBLISH from any thread, in order, without waiting.

Every process publishes on one event loop: the loop its sockets live on when
it is the web server, otherwise a private loop in a daemon thread. One task
drains a queue there, so a thread that commits (a request signing out) never
waits on Redis or opens a connection of its own, and a process's messages
leave in the order it handed them over.

The relay publishes live events itself, from its own thread
(realtime.fanout.events_publish); what goes this way are the messages that
end a user's sockets (realtime.fanout.credentials_publish).
"""

import asyncio
import logging
import threading
import weakref

import redis
import redis.asyncio
from django.conf import settings

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


def publish(channel, data):
    """Queue a PUBLISH of `data` on the Redis `channel` (REDIS_URL's); returns at once."""
    loop_call(_enqueue, channel, data)


def _enqueue(channel, data):
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = asyncio.Queue()
        loop.create_task(_drain(queue), name="hub-publisher-drain")
    queue.put_nowait((channel, data))


async def _drain(queue):
    timeout = settings.REDIS_TIMEOUT_SECONDS
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)
    while True:
        channel, data = await queue.get()
        try:
            try:
                await client.publish(channel, data)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                # Once more, over a fresh connection: an idle one may have timed out.
                await client.publish(channel, data)
        except (redis.RedisError, OSError) as exc:
            logger.warning("Not published on %s: %s", channel, exc)
