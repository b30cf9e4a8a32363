"""/metrics in services mode with real parts: what the Daphne process, the
`rundramatiq` worker and an open socket count reaches one Redis store, and
the web process serves all of it, with the queue depths, to staff only."""

import json
import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from notify.models import FINAL_STATUSES, Notification, NotificationAttempt
from realtime.models import Event
from tests.e2e.conftest import api_client, token_for, wait_until
from tests.factories import PASSWORD, StaffFactory, UserFactory
from tests.helpers import SEED_ORDER

pytestmark = pytest.mark.e2e

WORKER_TIMEOUT = 30
LABELS = {
    "hub_http_requests_total": {"view", "method", "status"},
    "hub_events_published_total": {"type"},
    "hub_notifications_finished_total": {"channel", "status"},
    "hub_notification_retries_total": {"channel"},
    "hub_notification_delivery_seconds_bucket": {"channel", "le"},
    "hub_notification_delivery_seconds_count": {"channel"},
    "hub_notification_delivery_seconds_sum": {"channel"},
    "hub_websocket_connections": set(),
    "hub_queue_depth": {"queue"},
}


def _scrape(url, token):
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Token {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _values(samples, name, **fixed):
    """{other labels: value} of the samples `name` whose labels include `fixed`."""
    found = {}
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample == name and all(labels.get(k) == v for k, v in fixed.items()):
            found[tuple(sorted((k, v) for k, v in labels.items() if k not in fixed))] = value
    return found


def _value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def _read_events(ws, done, timeout):
    """Events from the socket (heartbeats passed over) until `done(events)`."""
    events, deadline = [], time.monotonic() + timeout
    while not done(events):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; events so far: {[(e.get('type'), e.get('data')) for e in events]}"
        try:
            message = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            continue
        if message.get("type") != "heartbeat":
            assert message.get("id") is not None, message  # an event, not a resync or an error
            events.append(message)
    return events


def test_metrics_count_what_web_worker_and_sockets_did(services_hub, metrics_store):
    url = services_hub.url
    services_hub.telegram.script.append((500, "Internal Server Error"))  # one retry, then sent
    user, staff = UserFactory(password=PASSWORD), StaffFactory(password=PASSWORD)
    user_key, staff_key = token_for(url, user), token_for(url, staff)
    ws_url = url.replace("http://", "ws://", 1) + "/ws/events/"
    ws = connect(ws_url, additional_headers={"Authorization": f"Token {staff_key}"}, proxy=None, open_timeout=10)
    try:
        api = api_client(url, user_key)
        r = api.post("/customers/", json={"name": "Ann Lee", "email": user.email, "telegram_chat_id": "4242"})
        assert r.status_code == 201, r.text
        r = api.post("/orders/", json=SEED_ORDER)
        assert r.status_code == 201, r.text

        def all_sent():
            rows = list(Notification.objects.values_list("channel", "status"))
            return len(rows) == 3 and all(status in FINAL_STATUSES for _, status in rows) and rows

        rows = wait_until(all_sent, WORKER_TIMEOUT, what="the order's notifications delivered")
        assert sorted(rows) == [("email", "sent"), ("in_app", "sent"), ("telegram", "sent")]
        seen = _read_events(
            ws,
            lambda events: (
                sum(e["type"] == "notification.status_changed" and e["data"]["status"] == "sent" for e in events) == 3
            ),
            WORKER_TIMEOUT,
        )
        # The worker records its counts just after it commits: wait for them.
        samples = wait_until(
            lambda: (
                (s := _scrape(url, staff_key))
                and _value(s, "hub_notifications_finished_total", channel="email", status="sent") == 1
                and _value(s, "hub_notifications_finished_total", channel="telegram", status="sent") == 1
                and _value(s, "hub_notifications_finished_total", channel="in_app", status="sent") == 1
                and s
            ),
            WORKER_TIMEOUT,
            what="the worker's counts in /metrics",
        )
        assert wait_until(
            lambda: _value(_scrape(url, staff_key), "hub_websocket_connections") == 1, what="the open socket counted"
        )
    finally:
        ws.close()

    for name, labels in LABELS.items():
        series = [dict(key) for sample, key in samples if sample == name]
        assert series, name
        assert all(set(labels_of) == labels for labels_of in series), (name, series)

    http = "hub_http_requests_total"
    assert _value(samples, http, view="order-list", method="POST", status="201") == 1
    assert _value(samples, http, view="customer-list", method="POST", status="201") == 1
    assert _value(samples, http, view="auth-token", method="POST", status="200") == 2

    published = {dict(k)["type"]: v for k, v in _values(samples, "hub_events_published_total").items()}
    assert published == Counter(Event.objects.values_list("type", flat=True))
    for event_type, count in Counter(e["type"] for e in seen).items():
        assert published[event_type] >= count

    sent = Counter(Notification.objects.filter(status="sent").values_list("channel", flat=True))
    assert _values(samples, "hub_notifications_finished_total", status="sent") == {
        (("channel", channel),): count for channel, count in sent.items()
    }
    retries = Counter(
        NotificationAttempt.objects.filter(outcome="retry").values_list("notification__channel", flat=True)
    )
    assert retries == {"telegram": 1}
    assert _values(samples, "hub_notification_retries_total") == {(("channel", "telegram"),): 1}

    latency = "hub_notification_delivery_seconds"
    for channel, count in sent.items():
        assert _value(samples, f"{latency}_count", channel=channel) == count
        assert _value(samples, f"{latency}_bucket", channel=channel, le="+Inf") == count
        assert _value(samples, f"{latency}_sum", channel=channel) > 0

    assert set(dict(k)["queue"] for k in _values(samples, "hub_queue_depth")) == {
        "notify",
        "notify.DQ",
        "notify_urgent",
        "notify_urgent.DQ",
    }
    assert all(depth >= 0 for depth in _values(samples, "hub_queue_depth").values())

    # The socket closed: its process's count goes with it.
    wait_until(lambda: _value(_scrape(url, staff_key), "hub_websocket_connections") == 0, what="the socket uncounted")
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "not_authenticated"
