"""PostgreSQL drops the hub's connections (`pg_terminate_backend`, as a
restart or a failover would) while requests, the worker and the sweeper use
them: no 500, a 503 with Retry-After at most for a request whose connection
died under it, and every notification delivered by the worker itself, not
rescued later by the sweeper."""

import threading
import time

import psycopg
import pytest
from django.db import connection

from notify.models import Notification, NotificationStatus
from tests.e2e.conftest import _database_url, api_client, token_for, wait_until
from tests.factories import UserFactory

pytestmark = pytest.mark.e2e

MAILS = 40
TERMINATIONS = 3


def _terminator(spare_pids, stop, every_seconds=1.5):
    """Terminate every backend of the test database but `spare_pids`, every
    `every_seconds`, TERMINATIONS times or until `stop`; returns how many it ended."""
    ended = []

    def run():
        with psycopg.connect(_database_url(connection.settings_dict), autocommit=True) as conn:
            for _ in range(TERMINATIONS):
                if stop.wait(every_seconds):
                    return
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
                    [list(spare_pids)],
                ).fetchall()
                ended.append(sum(1 for (done,) in rows if done))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ended


def test_terminated_connections_cost_no_500_no_round_and_no_message(own_hub):
    # The sweeper would send again only what waited 10 minutes: within this
    # test, every notification that goes out is the worker's doing.
    hub = own_hub(NOTIFY_STALE_AFTER_SECONDS="600", NOTIFY_SENDING_TIMEOUT_SECONDS="600")
    user = UserFactory()
    token = token_for(hub.url, user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_pid,) = cursor.fetchone()
    mail = {"title": "Hi", "message": "Hello", "recipient_type": "email", "recipient": "ann@example.com"}

    stop = threading.Event()
    thread, ended = _terminator({own_pid}, stop)
    statuses, unavailable = [], 0
    with api_client(hub.url, token) as api:
        while thread.is_alive() or len(statuses) < MAILS:
            response = api.post("/notifications/send/", json=mail)
            if response.status_code == 503:
                unavailable += 1
                assert response.headers["Retry-After"] == "2"
                assert response.json()["error"]["code"] == "database_unavailable"
                continue  # a client tries again
            statuses.append(response.status_code)
            time.sleep(0.05)
    stop.set()
    thread.join()

    assert set(statuses) == {202}, statuses
    assert sum(ended) >= TERMINATIONS, ended  # each round ended at least one of the hub's connections
    notifications = Notification.objects.filter(sender=user)
    assert notifications.count() == len(statuses)
    wait_until(
        lambda: not notifications.exclude(status=NotificationStatus.SENT).exists(),
        timeout=60,
        what="every notification to be sent",
    )
    assert len({m["message"]["Message-ID"] for m in hub.sink.messages}) == len(statuses)
    assert "Sweep failed" not in hub.output("sweeper")
    assert "unhandled exception" not in hub.output("worker")
    print(f"{len(statuses)} sends, {unavailable} answered 503, {sum(ended)} connections terminated")
