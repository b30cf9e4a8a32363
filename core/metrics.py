"""Prometheus metrics at /metrics: what the hub's processes count, and where.

In services mode the counters and the delivery-latency histogram live in one
Redis hash: several Daphne and worker processes, often in other containers,
add to it, and whichever web process a scrape reaches reads the whole of it.
In embedded mode the one process keeps them in memory. Queue depths are read
from the broker at scrape time; open sockets are reported per process (see
`socket_opened`).

Increments made inside `batch()` (an HTTP request, a recorded delivery batch)
go to Redis together in one pipeline when it ends. A Redis error loses those
increments, is logged, and never fails the request, delivery or socket that
made them.
"""

import contextvars
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import Counter
from contextlib import contextmanager
from functools import partial
from typing import NamedTuple

import redis
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.utils import floatToGoString
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.logs import request_view_name
from core.redis import redis_client, redis_optional
from core.schema import error_response

logger = logging.getLogger(__name__)

STORE_KEY = "hub:metrics"
SOCKETS_KEY = "hub:metrics:sockets"
# A process rewrites its socket count this often while it has sockets; a
# count older than SOCKETS_STALE_SECONDS belongs to a process that is gone.
# The margin also absorbs small clock differences between containers.
SOCKETS_REFRESH_SECONDS = 10.0
SOCKETS_STALE_SECONDS = 30.0


class Metric(NamedTuple):
    name: str
    help: str
    labels: tuple[str, ...]


HTTP_REQUESTS = Metric(
    "hub_http_requests",
    "HTTP requests answered, by view (URL name; `unmatched` for unknown paths), method and status code.",
    ("view", "method", "status"),
)
EVENTS_PUBLISHED = Metric("hub_events_published", "Live events the relay published, by event type.", ("type",))
NOTIFICATIONS_FINISHED = Metric(
    "hub_notifications_finished",
    "Notifications that reached a final status (sent, failed, skipped), by channel and status.",
    ("channel", "status"),
)
NOTIFICATION_RETRIES = Metric(
    "hub_notification_retries", "Delivery attempts that failed transiently and were scheduled again.", ("channel",)
)
DELIVERY_SECONDS = Metric(
    "hub_notification_delivery_seconds",
    "Seconds from a notification's creation to its sending, by channel (queueing and retries included).",
    ("channel",),
)
# From an in-process send to one that waited out several retries or a backlog.
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
COUNTERS = (HTTP_REQUESTS, EVENTS_PUBLISHED, NOTIFICATIONS_FINISHED, NOTIFICATION_RETRIES)
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

_local = Counter()  # embedded mode: the store
_local_lock = threading.Lock()
_batch = contextvars.ContextVar("hub_metrics_batch", default=None)


def _redis():
    return redis_client(settings.REDIS_URL)


# ---- counting -------------------------------------------------------------------------


def _field(name, *values):
    return json.dumps([name, *map(str, values)])


def _flush(changes):
    if not changes:
        return
    if not settings.REDIS_URL:
        with _local_lock:
            _local.update(changes)
        return
    pipe = _redis().pipeline(transaction=False)
    for field, amount in changes.items():
        if isinstance(amount, int):
            pipe.hincrby(STORE_KEY, field, amount)
        else:
            pipe.hincrbyfloat(STORE_KEY, field, amount)
    redis_optional("metrics", pipe.execute)  # while Redis is down, counts are lost


def _add(changes):
    pending = _batch.get()
    if pending is None:
        _flush(changes)
    else:
        pending.update(changes)


@contextmanager
def batch():
    """Collect the increments made inside and record them once, at the end;
    inside another batch, they join that one."""
    if _batch.get() is not None:
        yield
        return
    pending = Counter()
    token = _batch.set(pending)
    try:
        yield
    finally:
        _batch.reset(token)
        _flush(pending)


def _observations(metric, values):
    """The histogram's fields for observations [(seconds, *label values)]: the
    first bucket each falls in (cumulated at scrape), the sum and the count."""
    changes = Counter()
    for seconds, *labels in values:
        index = bisect_left(DELIVERY_BUCKETS, seconds)
        if index < len(DELIVERY_BUCKETS):
            changes[_field(f"{metric.name}_bucket", *labels, DELIVERY_BUCKETS[index])] += 1
        changes[_field(f"{metric.name}_sum", *labels)] += float(seconds)
        changes[_field(f"{metric.name}_count", *labels)] += 1
    return changes


def http_request_count(request, response):
    view = request_view_name(request)
    method = request.method if request.method in HTTP_METHODS else "other"
    _add({_field(HTTP_REQUESTS.name, view, method, response.status_code): 1})


def events_published_on_commit(event_types):
    """Count events by type once the transaction commits (a rolled-back one publishes nothing)."""
    changes = Counter(_field(EVENTS_PUBLISHED.name, event_type) for event_type in event_types)
    transaction.on_commit(partial(_add, changes), robust=True)


def notifications_count_on_commit(*, finished=(), retried=()):
    """Count notifications that reached a final status (and the latency of
    those sent) and those scheduled for a retry, once the transaction commits."""
    changes = Counter(_field(NOTIFICATIONS_FINISHED.name, n.channel, n.status) for n in finished)
    changes.update(_field(NOTIFICATION_RETRIES.name, n.channel) for n in retried)
    sent = [((n.sent_at - n.created_at).total_seconds(), n.channel) for n in finished if n.status == "sent"]
    changes.update(_observations(DELIVERY_SECONDS, sent))
    if changes:
        transaction.on_commit(partial(_add, changes), robust=True)


def metrics_middleware(get_response):
    """Counts every response by view, method and status; what the request
    counted elsewhere (events, skipped notifications) goes to Redis with it."""

    def middleware(request):
        with batch():
            response = get_response(request)
            http_request_count(request, response)
        return response

    return middleware


# ---- open sockets -----------------------------------------------------------------------
#
# A shared counter that sockets increment and decrement would keep forever the
# sockets of a process that died without closing them (SIGKILL, OOM, a lost
# container). So each web process writes only its own count, with the time, to
# its field of SOCKETS_KEY, and a scrape sums the fields written recently: a
# dead process's count goes stale and drops out. A thread does the writing, so
# a socket's connect and disconnect only touch memory on the event loop.

_sockets = 0
_sockets_lock = threading.Lock()
_sockets_changed = threading.Event()
_sockets_writer = None


def socket_opened():
    _sockets_add(1)


def socket_closed():
    _sockets_add(-1)


def _sockets_add(delta):
    global _sockets, _sockets_writer
    with _sockets_lock:
        _sockets += delta
        if settings.REDIS_URL and _sockets_writer is None:
            _sockets_writer = threading.Thread(target=_sockets_write_loop, name="hub-metrics-sockets", daemon=True)
            _sockets_writer.start()
    _sockets_changed.set()


def _sockets_write_loop():
    field = f"{socket.gethostname()}:{os.getpid()}"
    count = 0
    while True:
        # Woken by a change, or in time to keep a non-zero count fresh.
        _sockets_changed.wait(SOCKETS_REFRESH_SECONDS if count else None)
        _sockets_changed.clear()
        count = _sockets
        try:
            if count:
                _redis().hset(SOCKETS_KEY, field, f"{count} {time.time()}")
            else:
                _redis().hdel(SOCKETS_KEY, field)
        except Exception as exc:  # Redis down, or anything else: the thread must live on
            logger.warning("Open socket count not recorded: %s", exc)


def _sockets_open(fields):
    """The sum of the fresh per-process counts; stale ones are deleted."""
    now, total, stale = time.time(), 0, []
    for field, value in fields.items():
        count, written = value.split()
        if now - float(written) > SOCKETS_STALE_SECONDS:
            stale.append(field)
        else:
            total += int(count)
    if stale:
        _redis().hdel(SOCKETS_KEY, *stale)
    return total


# ---- reading ----------------------------------------------------------------------------


class Snapshot(NamedTuple):
    series: dict  # (name, *label values) -> value
    sockets: int
    queues: dict


def snapshot():
    """Every metric's current values; raises redis.RedisError if they cannot be read."""
    from notify.heartbeat import queue_depths

    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=False)
        pipe.hgetall(STORE_KEY)
        pipe.hgetall(SOCKETS_KEY)
        store, sockets = pipe.execute()
        series = {tuple(json.loads(k)): float(v) for k, v in store.items()}
        open_sockets = _sockets_open({k.decode(): v.decode() for k, v in sockets.items()})
    else:
        with _local_lock:
            series = {tuple(json.loads(k)): v for k, v in _local.items()}
        open_sockets = _sockets
    return Snapshot(series, open_sockets, queue_depths())


def _histogram(metric, series):
    family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
    counts = {key[1:]: value for key, value in series.items() if key[0] == f"{metric.name}_count"}
    for labels, count in sorted(counts.items()):
        buckets, cumulative = [], 0
        for bound in DELIVERY_BUCKETS:
            cumulative += series.get((f"{metric.name}_bucket", *labels, str(bound)), 0)
            buckets.append((floatToGoString(bound), cumulative))
        buckets.append(("+Inf", count))
        family.add_metric(list(labels), buckets, series.get((f"{metric.name}_sum", *labels), 0.0))
    return family


def families(snap):
    out = []
    for metric in COUNTERS:
        family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
        for key, value in sorted(snap.series.items()):
            if key[0] == metric.name:
                family.add_metric(list(key[1:]), value)
        out.append(family)
    out.append(_histogram(DELIVERY_SECONDS, snap.series))
    out.append(GaugeMetricFamily("hub_websocket_connections", "WebSockets open on /ws/events/.", value=snap.sockets))
    queues = GaugeMetricFamily(
        "hub_queue_depth", "Messages waiting or in flight per queue (`.DQ`: delayed retries).", labels=["queue"]
    )
    for queue, depth in snap.queues.items():
        queues.add_metric([queue], depth)
    out.append(queues)
    return out


class _Collector:
    def __init__(self, snap):
        self.snap = snap

    def collect(self):
        return families(self.snap)


def exposition():
    """The Prometheus text format of every metric; raises redis.RedisError."""
    return generate_latest(_Collector(snapshot()))


# ---- the endpoint ---------------------------------------------------------------------------


def address_allowed(address):
    """Whether `address` is in METRICS_ALLOWED_IPS.

    The caller passes REMOTE_ADDR, the connection's own peer: X-Forwarded-For
    is written by the client and would let anyone claim an allowed address.
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(ip in network for network in settings.METRICS_ALLOWED_IPS)


class MetricsAccess(BasePermission):
    message = "Only staff, or an address in METRICS_ALLOWED_IPS, may read metrics."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff) or address_allowed(request.META.get("REMOTE_ADDR"))


class _ErrorsAsJson(BaseContentNegotiation):
    """The metrics are text whatever the client accepts; only errors go through
    a renderer, always JSON, so a scraper's Accept header never earns a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MetricsApi(APIView):
    """Staff, or an allow-listed address: the hub's metrics for Prometheus."""

    permission_classes = [MetricsAccess]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _ErrorsAsJson

    @swagger_auto_schema(
        operation_id="metrics",
        operation_summary="Prometheus metrics",
        produces=["text/plain", "application/json"],
        operation_description="Text exposition format 0.0.4. Staff token, or a client address in "
        "`METRICS_ALLOWED_IPS`.",
        responses={
            200: openapi.Response("Prometheus text format"),
            403: error_response("Neither staff nor an allowed address"),
            503: error_response("Redis unreachable"),
        },
    )
    def get(self, request):
        try:
            body = exposition()
        except redis.RedisError as exc:
            body = {"error": {"code": "metrics_unavailable", "message": f"Metrics unreadable: {exc}"}}
            return Response(body, status=503)
        return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
