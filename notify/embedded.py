"""Embedded mode: the worker and the sweeper run inside the web process, on
the in-memory broker, so `make run` alone delivers notifications."""

import logging
import threading

import dramatiq
from dramatiq import Worker

from notify.sweeper import sweeper_loop

logger = logging.getLogger(__name__)

WORKER_THREADS = 4
_started = threading.Lock()


def embedded_worker_start():
    """Start the in-process worker and sweeper, once per process."""
    if not _started.acquire(blocking=False):
        return
    import notify.tasks  # noqa: F401  declares the actors and their queues

    worker = Worker(dramatiq.get_broker(), worker_threads=WORKER_THREADS)
    worker.start()
    threading.Thread(target=sweeper_loop, args=(threading.Event(),), name="hub-sweeper", daemon=True).start()
    logger.info("Embedded worker (%d threads) and sweeper started", WORKER_THREADS)
