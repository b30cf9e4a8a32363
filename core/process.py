"""What a web process sets for itself when it starts."""

import logging
import resource

logger = logging.getLogger(__name__)


def open_files_limit_raise():
    """Raise this process's soft limit on open files to its hard limit: each
    socket is a file, and a common default soft limit of 1,024 would stop a
    web process at about a thousand sockets. Returns the soft limit it runs with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # a hard limit the kernel caps lower (nr_open)
            logger.warning("Open files: soft limit %s, could not raise it to %s: %s", soft, hard, exc)
            return soft
    logger.info("Open files: soft limit %s (was %s), hard limit %s", hard, soft, hard)
    return hard
