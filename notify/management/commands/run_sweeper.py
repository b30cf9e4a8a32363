import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from notify.sweeper import sweeper_loop

logger = logging.getLogger("notify.sweeper")


class Command(BaseCommand):
    help = "Re-enqueue notifications whose enqueue was lost or whose worker died, every NOTIFY_SWEEP_INTERVAL_SECONDS."

    def handle(self, *args, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # Logged, not printed: the process's output stays in LOG_FORMAT.
        logger.info("Sweeping every %gs", settings.NOTIFY_SWEEP_INTERVAL_SECONDS)
        sweeper_loop(stop)
