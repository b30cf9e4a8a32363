"""Redis trouble never reaches a request: a services-mode hub on a Redis of
its own, which the test stalls (SIGSTOP) and stops during order creates.
Every create answers, promptly; once Redis is back every notification is
sent and a resuming client gets every event, once."""

import json
import signal
import subprocess
import time

import httpx
import pytest
import redis
from django.db import connection
from websockets.sync.client import connect

from notify.models import Notification, NotificationStatus
from realtime.models import Event
from tests.conftest import TELEGRAM_TEST_TOKEN, service_unavailable
from tests.e2e.conftest import Processes, api_client, relayed_all, services_env, token_for, wait_until
from tests.factories import UserFactory
from tests.fakes import FakeTelegram, SmtpSink, free_port
from tests.helpers import SEED_ORDER

pytestmark = pytest.mark.e2e

# What a request may wait on a Redis it cannot reach: one command timeout
# (REDIS_TIMEOUT_SECONDS, 0.5 s), not the 20 s it used to hang, with room for
# a busy machine.
ANSWERED_WITHIN_SECONDS = 2.0


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
def hub_on_own_redis(transactional_db, tmp_path):
    """Services mode — Daphne, a worker, the sweeper — on PostgreSQL and a Redis of its own."""
    if connection.vendor != "postgresql":
        service_unavailable("DATABASE_URL does not point at PostgreSQL")
    own = RedisServer().start()
    sink, telegram = SmtpSink().start(), FakeTelegram(TELEGRAM_TEST_TOKEN).start()
    env = services_env(
        sink, telegram, REDIS_URL=own.url, NOTIFY_SWEEP_INTERVAL_SECONDS="0.5", NOTIFY_STALE_AFTER_SECONDS="2"
    )
    processes = Processes(env, tmp_path)
    processes.redis = own
    try:
        processes.start_web()
        processes.start_worker()
        processes.start_sweeper()
        yield processes
    finally:
        processes.stop_all()
        own.stop()
        sink.stop()
        telegram.stop()


def _create_orders(api, prefix, n):
    """Create `n` orders; the slowest answer's seconds."""
    slowest = 0.0
    for i in range(n):
        started = time.monotonic()
        r = api.post("/orders/", json={**SEED_ORDER, "order_number": f"{prefix}-{i}"})
        slowest = max(slowest, time.monotonic() - started)
        assert r.status_code == 201, r.text
    return slowest


def test_order_creates_answer_while_redis_stalls_or_stops_and_nothing_is_lost(hub_on_own_redis):
    hub = hub_on_own_redis
    user = UserFactory()
    token = token_for(hub.url, user)
    with api_client(hub.url, token) as api:
        assert _create_orders(api, "ORD-UP", 2) < ANSWERED_WITHIN_SECONDS

        hub.redis.stall()
        stalled = _create_orders(api, "ORD-STALLED", 5)
        hub.redis.resume()
        hub.redis.stop()
        stopped = _create_orders(api, "ORD-STOPPED", 5)

    assert stalled < ANSWERED_WITHIN_SECONDS, f"a create took {stalled:.2f} s while Redis stalled"
    assert stopped < ANSWERED_WITHIN_SECONDS, f"a create took {stopped:.2f} s while Redis was down"

    # Redis is back, empty (it keeps nothing on disk): the sweeper sends the
    # notifications again, and the log holds every event.
    hub.redis.start()
    orders = 12
    notifications = Notification.objects.filter(order__created_by=user)
    ended = [NotificationStatus.SENT, NotificationStatus.SKIPPED]
    wait_until(
        lambda: not notifications.exclude(status__in=ended).exists(), timeout=60, what="every notification to end"
    )
    emails = notifications.filter(channel="email")
    assert emails.count() == orders and not emails.exclude(status=NotificationStatus.SENT).exists()
    ws = connect(
        hub.url.replace("http://", "ws://", 1) + "/ws/events/?last_event_id=0",
        additional_headers={"Authorization": f"Token {token}"},
        proxy=None,
        open_timeout=10,
    )
    relayed_all()
    mine = list(Event.objects.filter(audience=user).order_by("id"))
    replayed = []
    while len(replayed) < len(mine):
        message = json.loads(ws.recv(timeout=10))
        if message.get("id") is not None:
            replayed.append(message)
    ws.close()
    assert [e["id"] for e in replayed] == [e.pk for e in mine]
    created = {e["data"]["order_number"] for e in replayed if e["type"] == "order.created"}
    assert len(created) == orders
    assert httpx.get(f"{hub.url}/health/redis/").status_code == 200
