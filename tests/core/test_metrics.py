"""/metrics: who may read it, the Prometheus text it serves, and the store
behind it (Redis in services mode, this process's memory in embedded mode)."""

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.redis import redis_client
from realtime.models import Event
from tests.helpers import SEED_ORDER
from tests.notify.conftest import empty_queues  # noqa: F401  (autouse: orders enqueue their notifications)

ROOT = Path(__file__).resolve().parents[2]
METRICS = "/metrics"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1
FAMILIES = {
    "hub_http_requests": "counter",
    "hub_events_published": "counter",
    "hub_notifications_finished": "counter",
    "hub_notification_retries": "counter",
    "hub_notification_delivery_seconds": "histogram",
    "hub_websocket_connections": "gauge",
    "hub_queue_depth": "gauge",
}


@pytest.fixture(params=["embedded", "services"])
def mode(request, settings, metrics_store):
    """Each test twice: counters in memory, and in Redis (skipped without it)."""
    if request.param == "services":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return request.param


def scrape(client, **extra):
    r = client.get(METRICS, **extra)
    assert r.status_code == 200, r.content
    assert r["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(r.content.decode())}


def value(families, name, sample=None, **labels):
    """The value of the sample `sample` (default: the family's own name) with exactly these labels, or None."""
    sample = sample or name
    found = [s.value for s in families[name].samples if s.name == sample and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def error_of(response):
    assert response["Content-Type"] == "application/json", response.content
    return response.json()["error"]


# ---- who may read ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_refuse_anonymous_clients_with_a_json_401(anon_client, metrics_store):
    r = anon_client.get(METRICS)

    assert r.status_code == 401
    assert error_of(r)["code"] == "not_authenticated"


@pytest.mark.django_db
def test_metrics_refuse_a_non_staff_token_with_a_json_403(user_client, metrics_store):
    r = user_client.get(METRICS)

    assert r.status_code == 403
    assert error_of(r) == {
        "code": "permission_denied",
        "message": "Only staff, or an address in METRICS_ALLOWED_IPS, may read metrics.",
    }


@pytest.mark.django_db
def test_metrics_serve_staff_every_family_with_its_help(staff_client, mode):
    families = scrape(staff_client, HTTP_ACCEPT="text/plain")  # what a scraper may ask for: no 406

    for name, kind in FAMILIES.items():
        assert families[name].type == kind, name
        assert families[name].documentation, name
    assert {s.labels["queue"] for s in families["hub_queue_depth"].samples} == {
        "notify",
        "notify.DQ",
        "notify_urgent",
        "notify_urgent.DQ",
    }
    assert value(families, "hub_websocket_connections") == 0


@pytest.mark.django_db
def test_metrics_serve_an_allow_listed_address_without_a_token(anon_client, settings, metrics_store):
    settings.METRICS_ALLOWED_IPS = [ip_network("10.20.0.0/16"), ip_network("192.0.2.7/32")]

    assert set(scrape(anon_client, REMOTE_ADDR="10.20.3.4")) >= set(FAMILIES)
    assert anon_client.get(METRICS, REMOTE_ADDR="192.0.2.7").status_code == 200
    assert anon_client.get(METRICS, REMOTE_ADDR="10.21.0.1").status_code == 401
    # The forwarded address is the client's own say-so.
    spoofed = anon_client.get(METRICS, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.20.3.4")
    assert spoofed.status_code == 401


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.20.3.4", True),
        ("::ffff:10.20.3.4", True),  # an IPv4 peer on a dual-stack socket
        ("2001:db8::1", True),
        ("10.21.0.1", False),
        ("2001:db9::1", False),
        ("", False),
        ("not-an-address", False),
        (None, False),
    ],
)
def test_metrics_address_allowed_matches_addresses_and_networks(settings, address, allowed):
    settings.METRICS_ALLOWED_IPS = [ip_network("10.20.0.0/16"), ip_network("2001:db8::/32")]

    assert metrics.address_allowed(address) is allowed


def test_metrics_allow_no_address_by_default(settings):
    assert settings.METRICS_ALLOWED_IPS == []
    assert metrics.address_allowed("127.0.0.1") is False


# ---- what is counted --------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_count_http_requests_by_view_method_and_status(staff_client, anon_client, mode):
    assert staff_client.get("/api/v1/orders/").status_code == 200
    assert staff_client.get("/api/v1/orders/").status_code == 200
    assert anon_client.get("/api/v1/orders/").status_code == 401
    assert anon_client.get("/no/such/page/").status_code == 404
    assert anon_client.generic("BREW", "/api/v1/orders/").status_code == 401

    families = scrape(staff_client)

    requests = "hub_http_requests"
    assert value(families, requests, "hub_http_requests_total", view="order-list", method="GET", status="200") == 2
    assert value(families, requests, "hub_http_requests_total", view="order-list", method="GET", status="401") == 1
    assert value(families, requests, "hub_http_requests_total", view="unmatched", method="GET", status="404") == 1
    assert value(families, requests, "hub_http_requests_total", view="order-list", method="other", status="401") == 1
    # This scrape is counted once it has been answered.
    assert value(families, requests, "hub_http_requests_total", view="metrics", method="GET", status="200") is None
    families = scrape(staff_client)
    assert value(families, requests, "hub_http_requests_total", view="metrics", method="GET", status="200") == 1


@pytest.mark.django_db(transaction=True)
def test_metrics_of_an_api_request_reach_the_store_in_one_write(user_client, staff_client, mode, monkeypatch):
    flushes = []
    flush = metrics._flush
    monkeypatch.setattr(metrics, "_flush", lambda changes: (flushes.append(dict(changes)), flush(changes)))

    r = user_client.post("/api/v1/orders/", SEED_ORDER, format="json")

    assert r.status_code == 201, r.content
    (changes,) = flushes  # the request, its events and its skipped notification together
    published = {
        json.loads(field)[1]: n for field, n in changes.items() if json.loads(field)[0] == "hub_events_published"
    }
    logged = {}
    for event_type in Event.objects.values_list("type", flat=True):
        logged[event_type] = logged.get(event_type, 0) + 1
    assert published == logged and logged["order.created"] == 1
    families = scrape(staff_client)
    assert (
        value(families, "hub_http_requests", "hub_http_requests_total", view="order-list", method="POST", status="201")
        == 1
    )
    for event_type, count in logged.items():
        assert value(families, "hub_events_published", "hub_events_published_total", type=event_type) == count
    # The customer made for the user has no Telegram chat id: that channel is skipped.
    finished = "hub_notifications_finished"
    assert value(families, finished, "hub_notifications_finished_total", channel="telegram", status="skipped") == 1
    assert value(families, finished, "hub_notifications_finished_total", channel="email", status="sent") is None


@pytest.mark.django_db
def test_metrics_count_nothing_a_rolled_back_transaction_did(staff_client, mode, django_capture_on_commit_callbacks):
    from django.db import transaction

    sent = SimpleNamespace(channel="email", status="sent", created_at=timezone.now(), sent_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            metrics.notifications_count_on_commit(finished=[sent])
            metrics.events_published_on_commit(["order.created"])
            raise RuntimeError("rolled back")

    families = scrape(staff_client)
    assert families["hub_notifications_finished"].samples == []
    assert families["hub_events_published"].samples == []


@pytest.mark.django_db
def test_metrics_histogram_buckets_are_cumulative_with_sum_and_count(
    staff_client, mode, django_capture_on_commit_callbacks
):
    created = timezone.now()

    def sent_after(seconds, channel="email"):
        return SimpleNamespace(
            channel=channel, status="sent", created_at=created, sent_at=created + timedelta(seconds=seconds)
        )

    with django_capture_on_commit_callbacks(execute=True):
        metrics.notifications_count_on_commit(finished=[sent_after(0.3), sent_after(1), sent_after(7)])
    with django_capture_on_commit_callbacks(execute=True):
        metrics.notifications_count_on_commit(finished=[sent_after(5000), sent_after(2, "telegram")])

    families = scrape(staff_client)
    name = "hub_notification_delivery_seconds"
    buckets = {
        s.labels["le"]: s.value
        for s in families[name].samples
        if s.name == f"{name}_bucket" and s.labels["channel"] == "email"
    }
    assert buckets == {
        "0.1": 0,
        "0.25": 0,
        "0.5": 1,
        "1.0": 2,  # an upper bound is inclusive
        "2.5": 2,
        "5.0": 2,
        "10.0": 3,
        "30.0": 3,
        "60.0": 3,
        "300.0": 3,
        "900.0": 3,
        "3600.0": 3,
        "+Inf": 4,
    }
    assert value(families, name, f"{name}_count", channel="email") == 4
    assert value(families, name, f"{name}_sum", channel="email") == pytest.approx(5008.3)
    assert value(families, name, f"{name}_count", channel="telegram") == 1
    finished = "hub_notifications_finished"
    assert value(families, finished, "hub_notifications_finished_total", channel="email", status="sent") == 4


# ---- the store ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_batch_records_its_increments_only_when_it_ends(mode, django_capture_on_commit_callbacks):
    with metrics.batch():
        with django_capture_on_commit_callbacks(execute=True):
            metrics.events_published_on_commit(["order.created"])
        with metrics.batch():  # a nested batch joins the outer one
            with django_capture_on_commit_callbacks(execute=True):
                metrics.events_published_on_commit(["order.created"])
        assert metrics.snapshot().series == {}
    assert metrics.snapshot().series == {("hub_events_published", "order.created"): 2}


@pytest.mark.django_db
def test_metrics_in_services_mode_are_shared_through_redis(
    staff_client, redis_url, metrics_store, django_capture_on_commit_callbacks
):
    """What another process (a worker, another Daphne) adds is in this process's scrape, and the other way round."""
    client = redis_client(redis_url)
    client.hincrby(metrics.STORE_KEY, json.dumps(["hub_notification_retries", "telegram"]), 3)

    with django_capture_on_commit_callbacks(execute=True):
        metrics.events_published_on_commit(["customer.updated"])

    families = scrape(staff_client)
    assert value(families, "hub_notification_retries", "hub_notification_retries_total", channel="telegram") == 3
    assert client.hget(metrics.STORE_KEY, json.dumps(["hub_events_published", "customer.updated"])) == b"1"


@pytest.mark.django_db
def test_metrics_in_embedded_mode_stay_in_memory(
    staff_client, settings, metrics_store, django_capture_on_commit_callbacks
):
    settings.REDIS_URL = ""

    with django_capture_on_commit_callbacks(execute=True):
        metrics.events_published_on_commit(["customer.updated"])

    assert metrics._local == {json.dumps(["hub_events_published", "customer.updated"]): 1}
    assert (
        value(scrape(staff_client), "hub_events_published", "hub_events_published_total", type="customer.updated") == 1
    )


@pytest.mark.django_db
def test_metrics_a_redis_outage_fails_no_request_but_the_scrape(
    anon_client, staff_client, settings, caplog, django_capture_on_commit_callbacks
):
    settings.REDIS_URL = NOWHERE

    with caplog.at_level(logging.WARNING, logger="core.redis"):
        assert anon_client.get("/").status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            metrics.events_published_on_commit(["order.created"])  # skipped: Redis just failed

    # One line for the outage, not one per call.
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["Redis unavailable (metrics"]
    r = staff_client.get(METRICS)
    assert r.status_code == 503
    assert error_of(r)["code"] == "metrics_unavailable"


# ---- configuration ------------------------------------------------------------------------------


def _allowed_ips_from_environment(value):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print([str(n) for n in settings.METRICS_ALLOWED_IPS])",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "METRICS_ALLOWED_IPS": value},
        capture_output=True,
        text=True,
    )
    return done


def test_metrics_allowed_ips_are_read_from_the_environment():
    done = _allowed_ips_from_environment("10.20.0.0/16, 192.0.2.7,2001:db8::/32")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['10.20.0.0/16', '192.0.2.7/32', '2001:db8::/32']"


def test_metrics_allowed_ips_refuse_what_is_not_an_address():
    done = _allowed_ips_from_environment("10.20.0.0/16,prometheus.internal")

    assert done.returncode != 0
    assert "METRICS_ALLOWED_IPS: 'prometheus.internal' does not appear to be an IPv4 or IPv6 network" in done.stderr
