"""Worker and sweeper heartbeats, and queue depths, for /health/worker/ and
the containers' health checks.

Each worker process beats every few seconds, and the sweeper after every
round it completes, into Redis (services mode) or into memory (embedded mode,
where both share the web process).
"""

import os
import socket
import threading
import time

import dramatiq
import redis
from django.conf import settings
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from core.redis import redis_client

BEAT_INTERVAL_SECONDS = 5
_KEY = "hub:worker-heartbeats"
_local_beats = {}
_SWEEPER_KEY = "hub:sweeper-heartbeats"
_local_sweeper_beats = {}


def _redis():
    return redis_client(settings.REDIS_URL)


def process_id():
    """`host:pid`: the host part tells a container's health check which beats are its own."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _beat(key, local_beats, member):
    now = time.time()
    if settings.REDIS_URL:
        _redis().hset(key, member, now)
    else:
        local_beats[member] = now


def _beats_recent(key, local_beats, timeout):
    if settings.REDIS_URL:
        beats = {k.decode(): float(v) for k, v in _redis().hgetall(key).items()}
    else:
        beats = dict(local_beats)
    now = time.time()
    gone = [m for m, t in beats.items() if now - t > timeout]
    if gone and settings.REDIS_URL:
        _redis().hdel(key, *gone)
    return {m: round(now - t, 1) for m, t in beats.items() if m not in gone}


def heartbeat_beat(worker_id):
    _beat(_KEY, _local_beats, worker_id)


def heartbeats_recent():
    """{worker_id: seconds since its last beat} for workers seen within the timeout."""
    return _beats_recent(_KEY, _local_beats, settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS)


def sweeper_beat(sweeper_id):
    _beat(_SWEEPER_KEY, _local_sweeper_beats, sweeper_id)


def sweeper_heartbeat_timeout():
    # A sweeper beats once a round, so allow a few rounds (a long one, a failed
    # one) before calling it gone.
    return max(settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS, 3 * settings.NOTIFY_SWEEP_INTERVAL_SECONDS)


def sweeper_beats_recent():
    """{sweeper_id: seconds since its last completed round} for sweepers seen within the timeout."""
    return _beats_recent(_SWEEPER_KEY, _local_sweeper_beats, sweeper_heartbeat_timeout())


def queue_depths():
    """Messages waiting (or in flight) per queue, and per delay queue for retries."""
    from notify.tasks import NOTIFY_QUEUES

    broker = dramatiq.get_broker()
    depths = {}
    for name in NOTIFY_QUEUES:
        for queue in (name, f"{name}.DQ"):
            if isinstance(broker, StubBroker):
                depths[queue] = broker.queues[queue].qsize() if queue in broker.queues else 0
            else:
                depths[queue] = broker.client.hlen(f"{broker.namespace}:{queue}.msgs")
    return depths


class HeartbeatMiddleware(Middleware):
    """Beats from a daemon thread for as long as the worker runs."""

    def after_worker_boot(self, broker, worker):
        worker_id = process_id()
        stop = threading.Event()
        worker._hub_heartbeat_stop = stop

        def beat():
            while not stop.is_set():
                try:
                    heartbeat_beat(worker_id)
                except redis.RedisError:
                    pass  # Redis is down: no beat, and health will say so
                stop.wait(BEAT_INTERVAL_SECONDS)

        threading.Thread(target=beat, name="hub-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        stop = getattr(worker, "_hub_heartbeat_stop", None)
        if stop:
            stop.set()
