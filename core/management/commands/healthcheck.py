"""A container's health check: is this container's hub process alive?

Exits 0 when it is and 1, with the reason, when it is not. Each kind looks only
at its own process, so one stopped worker does not mark every web container
unhealthy too.
"""

import socket

import httpx
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

PROBE_TIMEOUT_SECONDS = 5


def web_alive(port):
    """Daphne on `port` answers the health API, and the database and Redis it
    reports are up. The worker it reports has health checks of its own."""
    url = f"http://127.0.0.1:{port}/api/v1/health/"
    # The Host header must be one the hub serves; ".example.com" serves example.com.
    host = settings.ALLOWED_HOSTS[0].lstrip(".") if settings.ALLOWED_HOSTS else "localhost"
    try:
        response = httpx.get(url, headers={"Host": host}, timeout=PROBE_TIMEOUT_SECONDS, trust_env=False)
    except httpx.HTTPError as exc:
        return False, f"{url} unreachable: {exc}"
    try:
        components = response.json()["components"]
        down = sorted(name for name, c in components.items() if name != "worker" and not c["ok"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, f"{url} answered {response.status_code} without a health report"
    if down:
        return False, f"{url} reports down: {', '.join(down)}"
    return True, f"{url} answered {response.status_code}"


def _own(beats):
    """Beats from processes on this host (this container), by process id `host:pid`."""
    host = socket.gethostname()
    return {member: age for member, age in beats.items() if member.rpartition(":")[0] == host}


def worker_alive():
    from notify.heartbeat import heartbeats_recent

    try:
        beats = _own(heartbeats_recent())
    except redis.RedisError as exc:
        return False, f"worker heartbeats unreadable: {exc}"
    if not beats:
        timeout = settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS
        return False, f"no worker on {socket.gethostname()} has sent a heartbeat in {timeout:g} s"
    return True, f"workers beating: {beats}"


def sweeper_alive():
    from notify.heartbeat import sweeper_beats_recent, sweeper_heartbeat_timeout

    try:
        beats = _own(sweeper_beats_recent())
    except redis.RedisError as exc:
        return False, f"sweeper heartbeats unreadable: {exc}"
    if not beats:
        timeout = sweeper_heartbeat_timeout()
        return False, f"no sweeper on {socket.gethostname()} has completed a round in {timeout:g} s"
    return True, f"sweepers beating: {beats}"


class Command(BaseCommand):
    help = "Exit 0 if this container's web, worker or sweeper process is alive, 1 (with the reason) if not."
    # Runs every few seconds; the system checks are for start-up, not for this.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["web", "worker", "sweeper"])
        parser.add_argument("--port", type=int, default=8000, help="web: the port Daphne listens on")

    def handle(self, *args, kind, port, **options):
        if kind == "web":
            ok, detail = web_alive(port)
        elif kind == "worker":
            ok, detail = worker_alive()
        else:
            ok, detail = sweeper_alive()
        if not ok:
            raise CommandError(detail)
        self.stdout.write(f"{kind} ok: {detail}")
