"""Every write to the event log, and the one-time tickets browsers connect with."""

import hashlib
import json
import logging
import secrets
import threading
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from redis import RedisError

from core import metrics
from core.redis import redis_client
from realtime.models import Event, PruneMark
from realtime.publish import publish

logger = logging.getLogger(__name__)

STAFF_GROUP = "staff"
SEQ_KEY = "hub:realtime:seq"
TICKET_TTL_SECONDS = 30
# Any constant will do: the key of the lock that orders event-writing transactions.
_EVENT_ORDER_LOCK = 0x6875625F6576  # "hub_ev"


def user_group(user_id):
    return f"user.{user_id}"


def _lock_event_order():
    """Make event ids increase in commit order.

    Ids come from a sequence when the row is written, but transactions commit
    in their own order; a reader could then see event 11 before 10 commits,
    and a client resuming after 11 would never get 10. Holding this lock from
    the insert to the commit serialises event writers on PostgreSQL (SQLite
    already runs one writer at a time). Event writes come at the end of their
    transactions, followed at most by inserts, so the lock is held briefly
    and never while waiting for another row lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_EVENT_ORDER_LOCK])


_local_seqs = Counter()  # without Redis: this process is the only publisher
_local_seqs_lock = threading.Lock()


def _group_seqs(counts):
    """Reserve counts[group] consecutive numbers for each group; {group: first}.

    Numbers are taken under the event-order lock, so they follow commit order
    across every process; a socket delivers its group's messages in that order
    and treats a number that never arrives as a message the layer dropped.
    """
    if settings.REDIS_URL:
        pipe = redis_client(settings.REDIS_URL).pipeline(transaction=False)
        for group, count in counts.items():
            pipe.hincrby(SEQ_KEY, group, count)
        lasts = pipe.execute()
    else:
        with _local_seqs_lock:
            _local_seqs.update(counts)
            lasts = [_local_seqs[group] for group in counts]
    return {group: last - counts[group] + 1 for group, last in zip(counts, lasts, strict=True)}


def _messages(recorded):
    """[(group, message)] for events and their audiences, numbered per group."""
    targets = [[STAFF_GROUP, *map(user_group, sorted(ids))] for _, ids in recorded]
    try:
        seqs = _group_seqs(Counter(group for groups in targets for group in groups))
    except RedisError:
        # Redis is down, and the channel layer with it: the sockets it held are
        # gone, and their clients resume from the log when they reconnect.
        logger.warning("Redis unavailable: %d event(s) logged but not published", len(recorded))
        return []
    messages = []
    for (event, _), groups in zip(recorded, targets, strict=True):
        text = json.dumps(event.envelope())  # serialised once for every socket
        for group in groups:
            message = {
                "type": "event.message",
                "seq": seqs[group],
                "id": event.pk,
                "event_type": event.type,
                "order_id": event.data.get("order_id"),
                "text": text,
            }
            seqs[group] += 1
            messages.append((group, message))
    return messages


@transaction.atomic(savepoint=False)
def events_record(specs):
    """Write events (from realtime.events builders, each with its audience) in
    the current transaction; once it commits they go to the groups of everyone
    who may see them."""
    specs = list(specs)
    if not specs:
        return []
    audiences = [spec.audience for spec in specs]
    _lock_event_order()
    events = Event.objects.bulk_create([Event(type=spec.type, data=spec.data) for spec in specs])
    recorded = list(zip(events, audiences, strict=True))
    Audience = Event.audience.through
    Audience.objects.bulk_create([Audience(event_id=e.pk, user_id=user_id) for e, ids in recorded for user_id in ids])
    messages = _messages(recorded)
    if messages:
        transaction.on_commit(partial(publish, messages), robust=True)
        metrics.events_published_on_commit(e.type for e in events)
    return events


@transaction.atomic
def events_prune():
    """Delete events older than the retention, and remember the newest id that
    went. Returns how many events went."""
    cutoff = timezone.now() - timedelta(days=settings.REALTIME_EVENT_RETENTION_DAYS)
    newest = Event.objects.filter(created_at__lt=cutoff).aggregate(newest=Max("id"))["newest"]
    if newest is None:
        return 0
    mark, _ = PruneMark.objects.select_for_update().get_or_create(pk=1)
    mark.pruned_through = max(mark.pruned_through, newest)
    mark.save()
    _, by_model = Event.objects.filter(id__lte=newest).delete()
    return by_model.get(Event._meta.label, 0)  # the total counts the audience rows too


class Credential(NamedTuple):
    """What a socket opened with; the socket lives no longer than it.

    `token`: the knox token's digest; `session`: the session key; neither for
    a credential that only names the user (tests). `expires_at`: the token's
    expiry, if it has one. `is_staff`: the user's flag when it opened.
    """

    user: object
    token: str | None = None
    session: str | None = None
    expires_at: datetime | None = None

    @property
    def is_staff(self):
        return self.user.is_staff


def credentials_group(user_id):
    """Every socket of the user listens here for the end of its credentials."""
    return f"credentials.{user_id}"


def credentials_end_on_commit(user_id, *, token=None, session=None, reason):
    """Once the transaction commits, close the user's sockets opened with this
    token or session (with neither: all of them), on every web process."""
    message = {"type": "credentials.ended", "token": token, "session": session, "reason": reason}
    transaction.on_commit(partial(publish, [(credentials_group(user_id), message)]), robust=True)


def _ticket_key(ticket):
    return "hub:ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ticket_issue(*, user, token=None, session=None):
    """A one-time ticket to open a socket as `user`, valid for TICKET_TTL_SECONDS.
    The socket it opens ends with the token (knox AuthToken) or session key that asked for it."""
    ticket = secrets.token_urlsafe(32)
    value = {
        "user": user.pk,
        "token": token.digest if token is not None else None,
        "session": session,
        "expires_at": token.expiry.isoformat() if token is not None and token.expiry else None,
    }
    cache.set(_ticket_key(ticket), value, timeout=TICKET_TTL_SECONDS)
    return ticket


def ticket_redeem(ticket):
    """The ticket's Credential, or None; a ticket works once (the one that deletes it wins)."""
    key = _ticket_key(ticket)
    value = cache.get(key)
    if value is None or not cache.delete(key):
        return None
    user = get_user_model().objects.filter(pk=value["user"], is_active=True).first()
    if user is None:
        return None
    expires_at = datetime.fromisoformat(value["expires_at"]) if value["expires_at"] else None
    return Credential(user, token=value["token"], session=value["session"], expires_at=expires_at)
