"""Real hub processes for end-to-end tests: `manage.py` and Daphne, started
against the test database, spoken to over HTTP on loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30


def _database_url(db):
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Hub:
    """One Daphne process serving the hub, with the environment a deployment would give it."""

    def __init__(self, env, log_path):
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process = None

    def manage(self, *args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def start(self):
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "project.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer within {START_TIMEOUT_SECONDS}s:\n{self.output()}")

    def output(self):
        self.log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def hub(transactional_db, tmp_path):
    """A migrated, seeded hub in a Daphne process of its own, on the test database.

    `transactional_db` commits what the test writes so the server sees it, and
    empties the tables afterwards.
    """
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "DEBUG": "0",
        "SECRET_KEY": "e2e-test-secret-key",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    server = Hub(env, tmp_path / "daphne.log")
    server.manage("collectstatic", "--noinput")
    server.manage("seed_demo")
    server.start()
    yield server
    server.stop()
