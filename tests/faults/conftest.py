"""Real hub processes on a Redis of the test's own, which the test stalls,
stops and starts again."""

import signal
import subprocess

import pytest
import redis
from django.db import connection

from tests.conftest import TELEGRAM_TEST_TOKEN, service_unavailable
from tests.e2e.conftest import (
    Processes,
    _fast_password_hashing,  # noqa: F401  (the server processes' hashers)
    services_env,
    wait_until,
)
from tests.fakes import FakeTelegram, SmtpSink, free_port


class RedisServer:
    """A redis-server of the test's own, on a spare port, to stall and stop."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        try:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            service_unavailable("redis-server is not installed")
        wait_until(self._answers, 10, what="redis-server to answer")
        return self

    def _answers(self):
        try:
            return redis.Redis.from_url(self.url, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def stall(self):
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def own_hub(transactional_db, tmp_path):
    """A function that starts services mode — Daphne, a worker, the sweeper —
    on PostgreSQL and a Redis of its own, with more settings if given, and
    returns its processes (`.redis`, `.sink`, `.telegram` beside them)."""
    if connection.vendor != "postgresql":
        service_unavailable("DATABASE_URL does not point at PostgreSQL")
    started = []

    def start(**settings):
        own = RedisServer().start()
        sink, telegram = SmtpSink().start(), FakeTelegram(TELEGRAM_TEST_TOKEN).start()
        env = services_env(sink, telegram, REDIS_URL=own.url, NOTIFY_SWEEP_INTERVAL_SECONDS="0.5", **settings)
        processes = Processes(env, tmp_path)
        processes.redis, processes.sink, processes.telegram = own, sink, telegram
        started.append(processes)
        processes.start_web()
        processes.start_worker()
        processes.start_sweeper()
        return processes

    yield start
    for processes in started:
        processes.stop_all()
        processes.redis.stop()
        processes.sink.stop()
        processes.telegram.stop()


@pytest.fixture
def hub_on_own_redis(own_hub):
    return own_hub(NOTIFY_STALE_AFTER_SECONDS="2")
