"""The relay: moves committed events into the log, in commit order, and publishes them.

A request's transaction only inserts PendingEvent rows (realtime.services.
events_record); it takes no lock and makes no Redis call. The relay, one per
deployment, then gives each committed event its log id and publishes it.

The order. One relay round reads every pending row it can see (one statement,
so one snapshot: every row in it is committed) and orders them by
transaction, the transactions by the highest pending id each wrote, and a
transaction's rows by id. Every process and every resuming client sees that
order, because the log ids record it. It keeps what matters:

- A transaction's events stay together and in their order.
- A change follows the changes it saw. If transaction B read what A wrote,
  A had committed before B's read, so every id A drew came before any id B
  drew after that read, among them the id of the event describing B's
  change; B's highest id is therefore above A's. And A, committed before B,
  is visible no later than B: in an earlier round or in the same one, where
  it sorts first.
- Nothing appears behind the relay's back: it moves only what it saw, and a
  transaction that rolled back leaves nothing to wait for and no hole, since
  log ids are handed out only here, one writer at a time.

Leadership. On PostgreSQL every web process runs a relay thread; each tries
a session advisory lock every POLL_SECONDS, the holder leads, and when its
session ends (the process died) another takes over within POLL_SECONDS. Each round also takes a
transaction lock of its own, so two relays that both believe they lead still
take turns. The leader is woken by NOTIFY, sent after each event-writing
commit, and polls every POLL_SECONDS besides. In embedded mode (SQLite) the
relay is a thread woken by this process's own commits.

Publishing. Once a round commits, its events go to every web process at once
(realtime.fanout), in id order; a process that sees a hole in the ids reads
what it missed from the log.
"""

import json
import logging
import threading

import psycopg
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Max, Window

from core import metrics
from realtime.fanout import LiveEvent, events_publish
from realtime.models import Event, PendingEvent
from realtime.selectors import events_position

logger = logging.getLogger(__name__)

CHANNEL = "hub_events"  # LISTEN/NOTIFY channel
POLL_SECONDS = 1.0
BATCH = 2000  # pending rows a round moves at most (whole transactions; more if one is bigger)
RETRY_SECONDS = 2.0
# Any constants will do: the keys of the advisory locks.
LEADER_LOCK = 0x6875625F72656C  # "hub_rel"
ROUND_LOCK = 0x6875625F726E64  # "hub_rnd"

_wake = threading.Event()  # embedded mode: set after this process commits events
_started = False
_start_lock = threading.Lock()


def relay_wake():
    """After an event-writing commit: wake the relay to move the new events."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    else:
        _wake.set()


def _pending():
    """Every committed pending row this round may move, in log order; whole
    transactions, BATCH rows or so."""
    ordered = PendingEvent.objects.annotate(last=Window(Max("id"), partition_by=[F("transaction")])).order_by(
        "last", "id"
    )
    rows = list(ordered[: BATCH + 1])
    if len(rows) > BATCH:
        cut = rows[-1].last  # the last transaction may be cut short: leave it to the next round
        whole = [row for row in rows if row.last != cut]
        rows = whole or list(ordered.filter(id__lte=cut, transaction=rows[-1].transaction))
    return rows


def relay_round():
    """Move what has committed into the log and publish it; how many events moved."""
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROUND_LOCK])
        rows = _pending()
        if not rows:
            return 0
        first = events_position() + 1
        events = Event.objects.bulk_create(
            [
                Event(id=first + i, type=row.type, data=row.data, private=row.private, created_at=row.created_at)
                for i, row in enumerate(rows)
            ]
        )
        # A user deleted since the event was written is in its audience no more.
        named = {uid for row in rows for uid in row.audience}
        users = set(get_user_model().objects.filter(pk__in=named).values_list("pk", flat=True)) if named else set()
        audiences = [[uid for uid in row.audience if uid in users] for row in rows]
        Audience = Event.audience.through
        Audience.objects.bulk_create(
            [
                Audience(event_id=event.pk, user_id=uid)
                for event, ids in zip(events, audiences, strict=True)
                for uid in ids
            ]
        )
        PendingEvent.objects.filter(id__in=[row.id for row in rows]).delete()
        metrics.events_published_on_commit(event.type for event in events)
    # Committed: the log has them. The text is made once, for every socket.
    events_publish(
        [
            LiveEvent(
                event.pk, event.type, event.data.get("order_id"), audience, json.dumps(event.envelope()), event.private
            )
            for event, audience in zip(events, audiences, strict=True)
        ]
    )
    return len(events)


def relay_drain():
    """Relay rounds until nothing committed is left pending."""
    while relay_round():
        pass


def _lead_postgresql(stop):
    """Take the leader lock on a connection of its own (trying every
    POLL_SECONDS while another process holds it), then relay until that
    connection fails or `stop` is set."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as lock:
        while not lock.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK]).fetchone()[0]:
            if stop.wait(POLL_SECONDS):
                return
        lock.execute(f"LISTEN {CHANNEL}")
        logger.info("Event relay: leading")
        while not stop.is_set():
            relay_drain()
            close_old_connections()
            for _ in lock.notifies(timeout=POLL_SECONDS, stop_after=1):
                pass


def _lead_embedded(stop):
    while not stop.is_set():
        _wake.clear()
        relay_drain()
        _wake.wait(POLL_SECONDS)


def relay_run(stop):
    """Lead or stand by until `stop` is set, starting again after any failure."""
    while not stop.is_set():
        try:
            if connection.vendor == "postgresql":
                _lead_postgresql(stop)
            else:
                _lead_embedded(stop)
        except Exception:
            logger.exception("Event relay stopped; starting again in %s s", RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)
        finally:
            connection.close()


def relay_start():
    """Start this process's relay thread (once); on PostgreSQL it leads or stands by."""
    global _started
    with _start_lock:
        if _started:
            return
        _started = True
    threading.Thread(target=relay_run, args=(threading.Event(),), name="hub-relay", daemon=True).start()
