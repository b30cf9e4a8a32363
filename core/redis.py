"""Redis clients, and the rule for the Redis calls a request can do without."""

import logging
import threading
import time
from functools import cache

import dramatiq
import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_down_until = 0.0  # time.monotonic() before which optional calls are skipped
_down_lock = threading.Lock()


@cache
def redis_client(url):
    """One pooled, thread-safe client per Redis URL for this process.

    health_check_interval pings a connection that sat idle, so a socket the
    server or a firewall dropped is replaced instead of failing a command.
    Commands time out after REDIS_TIMEOUT_SECONDS, so a stalled Redis costs a
    caller that long at most.
    """
    timeout = settings.REDIS_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30)


def redis_optional(what, call, *args, default=None, **kwargs):
    """`call(*args, **kwargs)`, a Redis call a request can do without (counting
    a metric, a throttle's count, a broker message the sweeper sends again),
    unless Redis failed in the last REDIS_RETRY_SECONDS; on failure, log and
    go on. Returns what it returned, or `default` if it was skipped or failed.

    So a Redis outage costs one request one timeout, and the next requests
    nothing, until it is tried again."""
    global _down_until
    if time.monotonic() < _down_until:
        return default
    try:
        return call(*args, **kwargs)
    except (redis.RedisError, dramatiq.errors.BrokerConnectionError) as exc:
        with _down_lock:
            first = time.monotonic() >= _down_until
            _down_until = time.monotonic() + settings.REDIS_RETRY_SECONDS
        if first:
            logger.warning(
                "Redis unavailable (%s: %s); optional calls skipped for %g s", what, exc, settings.REDIS_RETRY_SECONDS
            )
        return default


def redis_optional_reset():
    """Try Redis again at the next optional call (tests, after an outage they made)."""
    global _down_until
    _down_until = 0.0
