"""Worker heartbeats and queue depths, for /health/worker/.

Each worker process beats every few seconds into Redis (services mode) or
into memory (embedded mode, where the worker shares the web process).
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


def _redis():
    return redis_client(settings.REDIS_URL)


def heartbeat_beat(worker_id):
    now = time.time()
    if settings.REDIS_URL:
        _redis().hset(_KEY, worker_id, now)
    else:
        _local_beats[worker_id] = now


def heartbeats_recent():
    """{worker_id: seconds since its last beat} for workers seen within the timeout."""
    if settings.REDIS_URL:
        beats = {k.decode(): float(v) for k, v in _redis().hgetall(_KEY).items()}
    else:
        beats = dict(_local_beats)
    now = time.time()
    gone = [w for w, t in beats.items() if now - t > settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS]
    if gone and settings.REDIS_URL:
        _redis().hdel(_KEY, *gone)
    return {w: round(now - t, 1) for w, t in beats.items() if w not in gone}


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
        worker_id = f"{socket.gethostname()}:{os.getpid()}"
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
