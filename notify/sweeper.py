import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from notify.services import notifications_sweep
from realtime.services import events_prune

logger = logging.getLogger(__name__)


def sweeper_loop(stop: threading.Event):
    """Every NOTIFY_SWEEP_INTERVAL_SECONDS until `stop` is set, re-enqueue what
    fell through and prune old events; errors are logged, never fatal."""
    while not stop.is_set():
        try:
            close_old_connections()
            notifications_sweep()
            events_prune()
        except Exception:
            logger.exception("Sweep failed; trying again next round")
        stop.wait(settings.NOTIFY_SWEEP_INTERVAL_SECONDS)
