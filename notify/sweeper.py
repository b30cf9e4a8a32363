import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from core.db import db_retry_once
from core.services import auth_tokens_prune
from notify.heartbeat import process_id, sweeper_beat
from notify.services import notifications_sweep
from realtime.services import events_prune

logger = logging.getLogger(__name__)


def _sweep_round():
    notifications_sweep()
    events_prune()
    auth_tokens_prune()


def sweeper_loop(stop: threading.Event):
    """Every NOTIFY_SWEEP_INTERVAL_SECONDS until `stop` is set, re-enqueue what
    fell through and prune old events and expired tokens; errors are logged, never fatal. Each
    round that completes leaves a heartbeat, so a health check sees a sweeper
    that is stuck or failing every round, not only one that exited."""
    sweeper_id = process_id()
    while not stop.is_set():
        try:
            close_old_connections()
            db_retry_once(_sweep_round)
            sweeper_beat(sweeper_id)
        except Exception:
            logger.exception("Sweep failed; trying again next round")
        stop.wait(settings.NOTIFY_SWEEP_INTERVAL_SECONDS)
