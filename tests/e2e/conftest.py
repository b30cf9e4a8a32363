"""Real hub processes for end-to-end tests: Daphne, and in services mode the
Dramatiq worker and the sweeper, started against the test database and
spoken to over HTTP on loopback."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import dramatiq
import httpx
import pytest
from django.db import connection
from websockets.sync.client import connect

from realtime.models import PendingEvent
from tests.conftest import TELEGRAM_TEST_TOKEN, service_unavailable
from tests.factories import PASSWORD
from tests.fakes import FakeTelegram, SmtpSink, free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30


def _database_url(db):
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def relayed_all():
    """Wait for the hub's relay to move every committed event into the log."""
    wait_until(lambda: not PendingEvent.objects.exists(), what="the relay to catch up")


def token_for(url, user):
    """Sign `user` in over the API (password PASSWORD); returns the token."""
    r = httpx.post(f"{url}/api/v1/auth/token/", json={"username": user.username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def events_socket(url, token, query=""):
    """A WebSocket to the hub's live events at `url`, opened with `token`."""
    return connect(
        url.replace("http://", "ws://", 1) + "/ws/events/" + query,
        additional_headers={"Authorization": f"Token {token}"},
        proxy=None,
        open_timeout=10,
    )


def api_client(url, token):
    """An HTTP client for the API at `url`, sending `token`."""
    return httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Token {token}"}, timeout=10)


class Processes:
    """The hub's processes for one test, each logging to a file of its own."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.running = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def manage(self, *args):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def start(self, name, *command, **env):
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its children stop with it
        )
        self.running[name] = (process, log)
        return process

    def output(self, name):
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def start_web(self, name="web", port=None, **env):
        """Daphne on `port` (the hub's own by default), with `env` besides the
        hub's environment; returns its base URL. Another name and port start
        one more web process beside the first."""
        port = port or self.port
        url = f"http://127.0.0.1:{port}"
        process = self.start(
            name, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port), "project.asgi:application", **env
        )

        def answers():
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited with {process.returncode}:\n{self.output(name)}")
            try:
                return httpx.get(f"{url}/", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, START_TIMEOUT_SECONDS, what=f"daphne ({name}) to answer")
        return url

    def start_worker(self, name="worker", **env):
        self.start(name, "manage.py", "rundramatiq", "--processes", "1", "--threads", "8", **env)

    def start_sweeper(self, **env):
        self.start("sweeper", "manage.py", "run_sweeper", **env)

    def stop(self, name, sig=signal.SIGTERM):
        process, log = self.running.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()

    def stop_all(self):
        """Stop every process and print the end of each log: pytest shows what a
        test printed only when it failed, where the logs tell why."""
        names = list(self.running)
        for name in names:
            self.stop(name)
        for name in names:
            print(f"----- {name}.log (last 100 lines) -----", *self.output(name).splitlines()[-100:], sep="\n")


def _hub_env(extra=None):
    return {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "DEBUG": "0",
        "SECRET_KEY": "e2e-test-secret-key",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def _worker_beat(processes):
    """Wait for the worker's first heartbeat: until then the hub reports itself unhealthy."""
    wait_until(
        lambda: httpx.get(f"{processes.url}/health/worker/", timeout=2).status_code == 200,
        START_TIMEOUT_SECONDS,
        what="the worker's first heartbeat",
    )


@pytest.fixture(scope="session")
def no_stray_worker():
    """Refuse to run beside a Dramatiq worker the tests did not start: reading
    the same Redis, it would take the tests' messages to another database, and
    they would vanish."""
    broker = dramatiq.get_broker()
    heartbeats = f"{broker.namespace}:__heartbeats__"
    broker.client.delete(heartbeats)
    time.sleep(1.5)  # an idle worker looks for messages, and beats, every second
    if broker.client.zcard(heartbeats):
        pytest.fail(f"A Dramatiq worker is already consuming from {os.environ['REDIS_URL']}: stop it first.")


@pytest.fixture
def hub(transactional_db, tmp_path, request):
    """A migrated, seeded hub on the test database, in the mode the environment
    gives: embedded (one Daphne process), or services (Daphne and a worker).

    `transactional_db` commits what the test writes so the processes see it,
    and empties the tables afterwards.
    """
    # A test may give the processes more settings: @pytest.mark.parametrize("hub", [{...}], indirect=True).
    processes = Processes(_hub_env({"EMAIL_URL": "consolemail://", **getattr(request, "param", {})}), tmp_path)
    processes.manage("collectstatic", "--noinput")
    processes.manage("seed_demo")
    try:
        processes.start_web()
        if os.environ.get("REDIS_URL"):
            request.getfixturevalue("no_stray_worker")
            processes.start_worker()
            _worker_beat(processes)
        yield processes
    finally:
        processes.stop_all()


def services_env(sink, telegram, **extra):
    """The environment of services-mode processes: mail to `sink`, Telegram to `telegram`."""
    return _hub_env(
        {
            "EMAIL_URL": f"smtp://127.0.0.1:{sink.port}",
            "TELEGRAM_BOT_TOKEN": TELEGRAM_TEST_TOKEN,
            "TELEGRAM_API_URL": telegram.url,
            "TELEGRAM_CHAT_INTERVAL_SECONDS": "0",
            "TELEGRAM_BOT_MESSAGES_PER_SECOND": "1000",
            "NOTIFY_RETRY_BASE_SECONDS": "0.2",
            **extra,
        }
    )


@pytest.fixture
def services_hub(transactional_db, tmp_path, redis_url, settings, request):
    """Services mode on real PostgreSQL and Redis: Daphne and a worker process,
    mail to a real SMTP server, Telegram to a Bot API stand-in. The sweeper is
    for the test to start."""
    if connection.vendor != "postgresql":
        service_unavailable("DATABASE_URL does not point at PostgreSQL")
    request.getfixturevalue("no_stray_worker")
    sink, telegram = SmtpSink().start(), FakeTelegram(TELEGRAM_TEST_TOKEN).start()
    dramatiq.get_broker().flush_all()
    from notify import heartbeat

    heartbeat._redis().delete(heartbeat._KEY)
    env = services_env(sink, telegram)
    processes = Processes(env, tmp_path)
    processes.sink, processes.telegram = sink, telegram
    processes.manage("seed_demo")
    try:
        processes.start_web()
        processes.start_worker()
        _worker_beat(processes)
        yield processes
    finally:
        processes.stop_all()
        sink.stop()
        telegram.stop()
        dramatiq.get_broker().flush_all()


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    """Users made here sign in to the server processes, which only know the real hashers."""


# Debian's Chromium as the machine's probe starts it: no background traffic to
# hosts a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium():
    """Chromium (Debian's package, `apt-get install chromium`) driven by Playwright.

    Playwright's synchronous API keeps its event loop marked running in this
    thread, which Django takes for an async context; the module's ORM calls
    are synchronous all the same, so Django is told to allow them meanwhile.
    """
    path = os.environ.get("HUB_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        service_unavailable(f"Chromium is not installed (apt-get install chromium, or HUB_CHROMIUM): {path}")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
