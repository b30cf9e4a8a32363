"""`manage.py healthcheck`: the containers' health checks."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from notify import heartbeat
from tests.fakes import free_port

ROOT = Path(__file__).resolve().parents[2]
THIS_HOST = socket.gethostname()


@pytest.fixture(autouse=True)
def no_beats(settings):
    """No heartbeat of any worker or sweeper, before and after each test."""

    def clear():
        heartbeat._local_beats.clear()
        heartbeat._local_sweeper_beats.clear()
        if settings.REDIS_URL:
            heartbeat._redis().delete(heartbeat._KEY, heartbeat._SWEEPER_KEY)

    clear()
    yield
    clear()


def beat_at(key, member, when):
    """A heartbeat as it would have been left at `when` (epoch seconds)."""
    from django.conf import settings

    if settings.REDIS_URL:
        heartbeat._redis().hset(key, member, when)
    elif key == heartbeat._KEY:
        heartbeat._local_beats[member] = when
    else:
        heartbeat._local_sweeper_beats[member] = when


def healthcheck(*args):
    call_command("healthcheck", *args)


def test_healthcheck_worker_passes_with_a_beat_from_this_host(capsys):
    heartbeat.heartbeat_beat(f"{THIS_HOST}:4242")

    healthcheck("worker")

    assert "worker ok" in capsys.readouterr().out


def test_healthcheck_worker_fails_with_beats_from_other_hosts_only():
    heartbeat.heartbeat_beat("another-container:4242")

    with pytest.raises(CommandError, match=f"no worker on {THIS_HOST}"):
        healthcheck("worker")


def test_healthcheck_worker_fails_when_its_last_beat_is_too_old(settings):
    beat_at(heartbeat._KEY, f"{THIS_HOST}:4242", time.time() - settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS - 5)

    with pytest.raises(CommandError, match="has sent a heartbeat"):
        healthcheck("worker")


def test_healthcheck_sweeper_passes_with_a_recent_round_from_this_host(capsys):
    heartbeat.sweeper_beat(heartbeat.process_id())

    healthcheck("sweeper")

    assert "sweeper ok" in capsys.readouterr().out


def test_healthcheck_sweeper_fails_after_rounds_stop(settings):
    settings.NOTIFY_SWEEP_INTERVAL_SECONDS = 30
    beat_at(heartbeat._SWEEPER_KEY, f"{THIS_HOST}:4242", time.time() - 3 * 30 - 5)
    # A worker's beat is no sweeper's.
    heartbeat.heartbeat_beat(f"{THIS_HOST}:4243")

    with pytest.raises(CommandError, match=f"no sweeper on {THIS_HOST} has completed a round in 90 s"):
        healthcheck("sweeper")


def test_healthcheck_exits_1_with_the_reason():
    done = subprocess.run(
        [sys.executable, "manage.py", "healthcheck", "sweeper"],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1
    assert "no sweeper on" in done.stderr


class FakeHub:
    """An HTTP server answering every GET with a canned status and body, and
    keeping the Host header of each request."""

    def __init__(self, status, body):
        hosts = self.hosts = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hosts.append(self.headers["Host"])
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "https://hub.example.com" + self.path)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    started = []

    def start(status, body):
        hub = FakeHub(status, body)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.close()


@pytest.mark.django_db
def test_healthcheck_web_passes_while_only_the_worker_is_down(fake_hub, settings, capsys):
    """The hub answers 503 (no worker) with the bare status it gives a probe; the database is up."""
    settings.REDIS_URL = ""
    settings.ALLOWED_HOSTS = [".example.com", "localhost"]
    hub = fake_hub(503, {"status": "unhealthy"})

    healthcheck("web", "--port", str(hub.port))

    assert "web ok" in capsys.readouterr().out
    assert hub.hosts == ["example.com"]


def test_healthcheck_web_fails_when_the_database_is_down(fake_hub, monkeypatch):
    from core.management.commands import healthcheck as command

    monkeypatch.setattr(command, "database_check", lambda: (False, "database unreachable: refused"))
    hub = fake_hub(503, {"status": "unhealthy"})

    with pytest.raises(CommandError, match=r"down: database \(database unreachable: refused\)"):
        healthcheck("web", "--port", str(hub.port))


def test_healthcheck_web_fails_on_a_redirect(fake_hub):
    hub = fake_hub(301, None)

    with pytest.raises(CommandError, match="answered 301 without a health report"):
        healthcheck("web", "--port", str(hub.port))


def test_healthcheck_web_fails_when_nothing_listens():
    with pytest.raises(CommandError, match="unreachable"):
        healthcheck("web", "--port", str(free_port()))


@pytest.mark.django_db(transaction=True)
def test_healthcheck_web_passes_against_the_hub(live_server, capsys):
    port = live_server.url.rsplit(":", 1)[1]

    healthcheck("web", "--port", port)

    assert "web ok" in capsys.readouterr().out
