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

from core.health import database_check, redis_check

PROBE_TIMEOUT_SECONDS = 5


def web_alive(port):
    """Daphne on `port` answers the health API, and the database and Redis it
    uses are up (checked from here: the API tells only staff which component
    is down). The worker has health checks of its own."""
    url = f"http://127.0.0.1:{port}/api/v1/health/"
    # The Host header must be one the hub serves; ".example.com" serves example.com.
    host = settings.ALLOWED_HOSTS[0].lstrip(".") if settings.ALLOWED_HOSTS else "localhost"
    try:
        response = httpx.get(url, headers={"Host": host}, timeout=PROBE_TIMEOUT_SECONDS, trust_env=False)
    except httpx.HTTPError as exc:
        return False, f"{url} unreachable: {exc}"
    try:
        response.json()["status"]
    except (ValueError, KeyError, TypeError):
        return False, f"{url} answered {response.status_code} without a health report"
    checks = {"database": database_check} | ({"redis": redis_check} if settings.REDIS_URL else {})
    results = {name: check() for name, check in checks.items()}
    down = [f"{name} ({reason})" for name, (ok, reason) in results.items() if not ok]
    if down:
        return False, f"down: {', '.join(down)}"
    return True, f"{url} answered {response.status_code}"


def beating(kind):
    """A worker (its last beat) or a sweeper (its last completed round) on this
    host, this container, beat within its timeout: beats are `host:pid`."""
    from notify import heartbeat

    recent, timeout, what = {
        "worker": (heartbeat.heartbeats_recent, settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS, "sent a heartbeat"),
        "sweeper": (heartbeat.sweeper_beats_recent, heartbeat.sweeper_heartbeat_timeout(), "completed a round"),
    }[kind]
    host = socket.gethostname()
    try:
        beats = {member: age for member, age in recent().items() if member.rpartition(":")[0] == host}
    except redis.RedisError as exc:
        return False, f"{kind} heartbeats unreadable: {exc}"
    if not beats:
        return False, f"no {kind} on {host} has {what} in {timeout:g} s"
    return True, f"{kind}s beating: {beats}"


class Command(BaseCommand):
    help = "Exit 0 if this container's web, worker or sweeper process is alive, 1 (with the reason) if not."
    # Runs every few seconds; the system checks are for start-up, not for this.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["web", "worker", "sweeper"])
        parser.add_argument("--port", type=int, default=8000, help="web: the port Daphne listens on")

    def handle(self, *args, kind, port, **options):
        ok, detail = web_alive(port) if kind == "web" else beating(kind)
        if not ok:
            raise CommandError(detail)
        self.stdout.write(f"{kind} ok: {detail}")
