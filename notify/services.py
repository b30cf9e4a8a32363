"""Every write to the notification ledger.

A notification row is written in the transaction of the change that causes
it; its enqueue runs only once that transaction commits. A worker claims the
row with a conditional update before it sends, so a duplicate or redelivered
message never sends twice; what the claim cannot cover (a worker dying after
the provider accepted the message but before the row says so) is retried once
the row has been `sending` for NOTIFY_SENDING_TIMEOUT_SECONDS: at least once.
"""

import hashlib
import json
import logging
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from core import metrics
from core.db import db_retry_once
from core.exceptions import Conflict
from core.logs import request_id_current, secrets_redacted
from core.redis import redis_optional
from notify.channels import DeliveryError, NotDelivered, Outbox, PermanentError, RecipientBlocked, TransientError
from notify.models import (
    FINAL_STATUSES,
    AttemptOutcome,
    Channel,
    IdempotencyKey,
    Notification,
    NotificationAttempt,
    NotificationKind,
    NotificationStatus,
    Priority,
)
from notify.selectors import notification_viewer_ids
from notify.tasks import deliver_actor_for
from orders.models import Customer
from orders.selectors import preferences_get
from realtime import events
from realtime.services import events_record

logger = logging.getLogger(__name__)
delivery_logger = logging.getLogger("hub.delivery")

_ORDER_EVENT_KINDS = {
    "created": NotificationKind.ORDER_CREATED,
    "status_changed": NotificationKind.ORDER_STATUS_CHANGED,
}


def _build(*, channel, title, message, html_message=None, **fields):
    """An unsaved row; email gets the plain message as its HTML body unless given one."""
    if html_message is None:
        html_message = (
            render_to_string("notify/email.html", {"title": title, "message": message})
            if channel == Channel.EMAIL
            else ""
        )
    return Notification(channel=channel, title=title, message=message, html_message=html_message, **fields)


def _notifications_create(*, sender, items):
    rows = Notification.objects.bulk_create([_build(sender=sender, **item) for item in items])
    notifications_enqueue_on_commit(rows)
    _notifications_announce(rows)
    return rows


def notification_events(rows, *, old_status=None):
    """The rows' events, for events_record: created, or (with `old_status`) moved on from it."""
    audiences = notification_viewer_ids(rows)
    if old_status is None:
        return [events.notification_created(n, audience=audiences[n.pk]) for n in rows]
    return [events.notification_status_changed(n, old_status, audience=audiences[n.pk]) for n in rows]


def _notifications_announce(rows, old_status=None):
    events_record(notification_events(rows, old_status=old_status))


def notifications_enqueue_on_commit(notifications):
    """Hand the rows to the workers once the surrounding transaction commits."""
    ids = [(n.pk, n.priority) for n in notifications if n.status == NotificationStatus.PENDING]
    if ids:
        # The request that wrote the rows goes with them, for the worker's log lines.
        request_id = request_id_current()
        # After the commit: a connection the database drops now must not leave the rows to the sweeper.
        enqueue = partial(db_retry_once, notifications_enqueue, ids, request_id=request_id)
        transaction.on_commit(enqueue, robust=True)


def notifications_enqueue(ids_with_priority, *, delay_ms=None, request_id=None):
    """Put (id, priority) pairs on the broker, up to NOTIFY_BATCH_SIZE ids to a
    message, and mark the rows queued as of now. `request_id` is the request
    that caused the sends, if any.

    The rows are marked first, and the messages sent after: a worker takes a
    message at once, and its claim skips rows locked by an update still under
    way, which would then wait for the sweeper. Restarting `queued_at` on rows
    the sweeper enqueues again keeps a slow queue from being flooded with
    copies. If the broker is down the rows stay queued without a message, and
    the sweeper enqueues them again after NOTIFY_STALE_AFTER_SECONDS.
    """
    waiting = [NotificationStatus.PENDING, NotificationStatus.QUEUED]
    Notification.objects.filter(pk__in=[pk for pk, _ in ids_with_priority], status__in=waiting).update(
        status=NotificationStatus.QUEUED, queued_at=timezone.now()
    )
    _send_messages(ids_with_priority, delay_ms=delay_ms, request_id=request_id)


def _send_messages(ids_with_priority, *, delay_ms, request_id):
    """Send the broker messages, unless Redis is down (then the rows wait for the sweeper)."""
    redis_optional("enqueue", _broker_messages, ids_with_priority, delay_ms=delay_ms, request_id=request_id)


def _broker_messages(ids_with_priority, *, delay_ms, request_id):
    """The broker messages for (id, priority) pairs: by priority's queue, NOTIFY_BATCH_SIZE ids to a message."""
    by_actor = defaultdict(list)
    for pk, priority in ids_with_priority:
        by_actor[deliver_actor_for(priority)].append(pk)
    size = settings.NOTIFY_BATCH_SIZE
    for actor, ids in by_actor.items():
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            actor.send_with_options(args=(batch,), kwargs={"request_id": request_id}, delay=delay_ms)


def _request_hash(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _IdempotencyRace(Exception):
    pass


def _idempotent_once(*, user, key, payload, create):
    request_hash = _request_hash(payload)
    existing = IdempotencyKey.objects.filter(user=user, key=key).first()
    if existing is None:
        notifications = create()
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    user=user, key=key, request_hash=request_hash, notification_ids=[n.pk for n in notifications]
                )
        except IntegrityError:
            raise _IdempotencyRace() from None
        return notifications, False
    if existing.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
        )
    by_id = Notification.objects.in_bulk(existing.notification_ids)
    return [by_id[pk] for pk in existing.notification_ids if pk in by_id], True


def _with_idempotency(*, user, key, payload, create):
    """Run `create()` once per (user, key); a repeat with the same payload gets
    the same rows and sends nothing. Returns (notifications, replayed)."""
    if not key:
        with transaction.atomic():
            return create(), False
    try:
        with transaction.atomic():
            return _idempotent_once(user=user, key=key, payload=payload, create=create)
    except _IdempotencyRace:
        # A concurrent request with the same key committed first; ours rolled
        # back (its enqueues with it) and we answer with theirs.
        with transaction.atomic():
            return _idempotent_once(user=user, key=key, payload=payload, create=create)


def notification_send(*, sender, idempotency_key="", **fields):
    """The seed's single send. Returns (notification, replayed)."""
    notifications, replayed = _with_idempotency(
        user=sender,
        key=idempotency_key,
        payload=fields,
        create=lambda: _notifications_create(sender=sender, items=[fields]),
    )
    return notifications[0], replayed


def notifications_bulk_send(*, sender, items, idempotency_key=""):
    """Create every item or none. Returns (notifications, replayed)."""
    return _with_idempotency(
        user=sender,
        key=idempotency_key,
        payload=items,
        create=lambda: _notifications_create(sender=sender, items=items),
    )


def _skip_reason(customer, preferences, channel):
    """Why this order notification is not to be sent, or "" if it is."""
    if not preferences.order_updates:
        return "the customer turned off order updates"
    if channel == Channel.EMAIL and not preferences.email_enabled:
        return "the customer turned off email"
    if channel == Channel.TELEGRAM and not preferences.telegram_enabled:
        return "the customer turned off Telegram"
    if channel == Channel.TELEGRAM and customer.telegram_chat_id is None:
        return "no Telegram chat id on file"
    if channel == Channel.IN_APP and not preferences.in_app_enabled:
        return "the customer turned off in-app messages"
    return ""


def _customer_account(customer, actor):
    """The active account linked to `customer`, or None; the actor's own
    (an account placing its own order) without a query."""
    if customer.owner_id is None:
        return None
    owner = actor if actor is not None and actor.pk == customer.owner_id else customer.owner
    return owner if owner.is_active else None


def _subject(template, context):
    """`template`/subject.txt on one line: it becomes a title and a mail's Subject."""
    return " ".join(render_to_string(f"{template}/subject.txt", context).split())


def _order_event_rows(order_event):
    order, customer = order_event.order, order_event.order.customer
    kind = _ORDER_EVENT_KINDS[order_event.kind]
    context = {"order": order, "customer": customer, "event": order_event}
    title = _subject(f"notify/{kind}", context)
    base = {
        "kind": kind,
        "title": title,
        "priority": Priority.NORMAL,
        "customer": customer,
        "order": order,
        "order_event": order_event,
        "sender": order_event.actor,
    }
    preferences = preferences_get(customer=customer)
    chat_id = "" if customer.telegram_chat_id is None else str(customer.telegram_chat_id)
    short = render_to_string(f"notify/{kind}/short.txt", context).strip()
    contents = {
        Channel.EMAIL: {
            "recipient": customer.email,
            "message": render_to_string(f"notify/{kind}/body.txt", context).strip(),
            "html_message": render_to_string(f"notify/{kind}/body.html", {"title": title, **context}),
        },
        Channel.TELEGRAM: {"recipient": chat_id, "message": short},
    }
    account = _customer_account(customer, order_event.actor)
    if account is not None:  # the hub's own inbox, for a customer with an account
        contents[Channel.IN_APP] = {"recipient": account.get_username(), "message": short}
    for channel, content in contents.items():
        reason = _skip_reason(customer, preferences, channel)
        skipped = {"status": NotificationStatus.SKIPPED, "last_error": reason} if reason else {}
        yield _build(channel=channel, **content, **base, **skipped)


@transaction.atomic(savepoint=False)
def notifications_for_order_event(*, order_event):
    """One row per channel for an order's change: to be sent, or skipped with
    the reason. Ledger rows only: the caller records their events
    (notification_events) with its own, in one write.

    Called inside the order's transaction, so a rollback takes the rows with it.
    """
    if order_event.kind not in _ORDER_EVENT_KINDS:
        return []
    rows = Notification.objects.bulk_create(list(_order_event_rows(order_event)))
    notifications_enqueue_on_commit(rows)
    metrics.notifications_count_on_commit(finished=[r for r in rows if r.status == NotificationStatus.SKIPPED])
    return rows


@transaction.atomic
def email_verification_notify(*, user, code):
    """The mail with `user`'s verification code, as a ledger row like any other.

    It has no sender and no customer, so only staff see it: the code in its
    body must reach the address alone, not the account that asked for it.
    """
    context = {"user": user, "code": code, "hours": round(settings.EMAIL_VERIFICATION_TTL.total_seconds() / 3600)}
    template = f"notify/{NotificationKind.EMAIL_VERIFICATION}"
    title = _subject(template, context)
    item = {
        "kind": NotificationKind.EMAIL_VERIFICATION,
        "channel": Channel.EMAIL,
        "recipient": user.email,
        "title": title,
        "message": render_to_string(f"{template}/body.txt", context).strip(),
        "html_message": render_to_string(f"{template}/body.html", {"title": title, **context}),
        "priority": Priority.HIGH,
    }
    (row,) = _notifications_create(sender=None, items=[item])
    return row


@transaction.atomic
def notification_retry(*, notification, by):
    """Staff: send a failed notification again, with a fresh retry budget;
    its attempts go on being numbered from where they were."""
    updated = Notification.objects.filter(pk=notification.pk, status=NotificationStatus.FAILED).update(
        status=NotificationStatus.PENDING, attempts_before_retry=F("attempts"), next_attempt_at=None, failed_at=None
    )
    if not updated:
        raise Conflict("Only failed notifications can be retried.", code="not_failed")
    notification.refresh_from_db()
    notifications_enqueue_on_commit([notification])
    _notifications_announce([notification], old_status=NotificationStatus.FAILED)
    return notification


def _backoff_seconds(attempt, retry_after=None):
    ceiling = min(settings.NOTIFY_RETRY_MAX_SECONDS, settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads retries that failed together
    return max(delay, float(retry_after or 0))


# How long a row that was locked when its batch was claimed waits before its
# next try (a delete of its order, say, was setting its order_id to NULL).
LOCKED_RETRY_MS = 1000


def _claim(ids, now):
    """Take the rows of `ids` that are ours to send, all stamped `sending_at=now`.

    A row is ours if it waits and is due, or if a worker that died left it
    `sending` for longer than the timeout. Rows another transaction holds at
    this moment are skipped, not waited for, and tried again shortly: nothing
    else would send them before the sweeper.
    """
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1))
    waiting = Q(status__in=[NotificationStatus.PENDING, NotificationStatus.QUEUED]) & due
    stale = now - timedelta(seconds=settings.NOTIFY_SENDING_TIMEOUT_SECONDS)
    abandoned = Q(status=NotificationStatus.SENDING, sending_at__lt=stale)
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(waiting | abandoned, pk__in=ids)
            .order_by("pk")
        )
        claim = {"status": NotificationStatus.SENDING, "sending_at": now}
        Notification.objects.filter(pk__in=[row.pk for row in rows]).update(**claim, attempts=F("attempts") + 1)
        skipped = []
        if len(rows) < len(set(ids)):
            # Read without a lock: what still waits and was not returned is held by another transaction.
            unclaimed = set(ids) - {row.pk for row in rows}
            skipped = list(Notification.objects.filter(waiting, pk__in=unclaimed).values_list("pk", "priority"))
    for row in rows:
        row.status, row.sending_at, row.attempts = NotificationStatus.SENDING, now, row.attempts + 1
    if skipped:
        _send_messages(skipped, delay_ms=LOCKED_RETRY_MS, request_id=request_id_current())
    return rows


# A batch stops sending after this long (or half the sending timeout, if less)
# and puts back what it did not get to, well before anyone may take it over.
BATCH_SECONDS = 60.0
# Attempts are written every NOTIFY_RECORD_EVERY sends or RECORD_EVERY_SECONDS,
# whichever comes first: a worker killed mid-batch has sent at most that many
# unrecorded, and those are sent again (with the same Message-ID).
RECORD_EVERY_SECONDS = 1.0


class _Attempt(NamedTuple):
    notification: Notification
    started: datetime
    finished: datetime
    provider_message_id: str
    error: DeliveryError | None


def notifications_deliver(*, notification_ids):
    """Send the rows of a batch that are ours to send; record each attempt and
    what comes next. Returns the rows it claimed."""
    claimed_at = timezone.now()
    batch = db_retry_once(_claim, notification_ids, claimed_at)
    clock = time.monotonic()
    deadline = clock + min(BATCH_SECONDS, settings.NOTIFY_SENDING_TIMEOUT_SECONDS / 2)
    recorded, attempts = clock, []
    with Outbox() as outbox:
        for index, notification in enumerate(batch):
            if time.monotonic() > deadline:
                _release(batch[index:], claimed_at)
                break
            attempts.append(_attempt(outbox, notification))
            if len(attempts) >= settings.NOTIFY_RECORD_EVERY or time.monotonic() - recorded >= RECORD_EVERY_SECONDS:
                db_retry_once(_attempts_record, claimed_at, attempts)
                recorded, attempts = time.monotonic(), []
    if attempts:
        db_retry_once(_attempts_record, claimed_at, attempts)
    return batch


def _attempt(outbox, notification):
    started = timezone.now()
    provider_message_id, error = "", None
    try:
        provider_message_id = outbox.send(notification)
    except DeliveryError as exc:
        provider_message_id, error = exc.delivered, exc
    except Exception as exc:  # a bug or an unforeseen failure: retry, and keep the reason
        logger.exception("Unexpected error delivering notification %s", notification.pk)
        error = TransientError(secrets_redacted(f"{type(exc).__name__}: {exc}"))
    return _Attempt(notification, started, timezone.now(), provider_message_id, error)


def _release(notifications, claimed_at):
    """Give back rows the batch had no time left for, their claim uncounted."""
    Notification.objects.filter(
        pk__in=[n.pk for n in notifications], status=NotificationStatus.SENDING, sending_at=claimed_at
    ).update(status=NotificationStatus.PENDING, attempts=F("attempts") - 1)
    notifications_enqueue([(n.pk, n.priority) for n in notifications], request_id=request_id_current())


def _outcome(attempt):
    """(outcome, row changes, retry delay in seconds or None) for one attempt."""
    notification, error = attempt.notification, attempt.error
    if error is None:
        changes = {
            "status": NotificationStatus.SENT,
            "sent_at": attempt.finished,
            "provider_message_id": attempt.provider_message_id,
            "last_error": "",
        }
        return AttemptOutcome.SENT, changes, None
    # What a split message delivered before it failed stays on record.
    delivered = {"provider_message_id": attempt.provider_message_id} if attempt.provider_message_id else {}
    # The retry budget counts from the last staff retry; attempt numbers go on.
    tries = notification.attempts - notification.attempts_before_retry
    if isinstance(error, NotDelivered):
        return AttemptOutcome.NOT_DELIVERED, {"status": NotificationStatus.SKIPPED, "last_error": str(error)}, None
    if isinstance(error, PermanentError):
        changes = {"status": NotificationStatus.FAILED, "failed_at": attempt.finished, "last_error": str(error)}
        return AttemptOutcome.FAILED, changes | delivered, None
    if tries > settings.NOTIFY_MAX_RETRIES:
        reason = f"{error} (gave up after {tries} attempts)"
        changes = {"status": NotificationStatus.FAILED, "failed_at": attempt.finished, "last_error": reason}
        return AttemptOutcome.FAILED, changes | delivered, None
    delay = _backoff_seconds(tries, error.retry_after)
    changes = {
        "status": NotificationStatus.PENDING,
        "last_error": str(error),
        "next_attempt_at": attempt.finished + timedelta(seconds=delay),
    }
    return AttemptOutcome.RETRY, changes | delivered, delay


def _mark_sent(claimed_at, sent):
    """Move the sent rows of `sent` ({pk: attempt}) that are still ours to
    `sent`, each with its own time and provider id; returns the pks it moved.

    One `UPDATE … FROM (VALUES …)` (PostgreSQL, and SQLite 3.33+): the ORM's
    per-row `Case`/`When` cost the worker a tenth of its CPU.
    """
    table = connection.ops.quote_name(Notification._meta.db_table)
    field = Notification._meta.get_field("sent_at")
    params = [NotificationStatus.SENT]
    for pk, attempt in sent.items():
        params += [pk, field.get_db_prep_value(attempt.finished, connection), attempt.provider_message_id]
    params += [NotificationStatus.SENDING, field.get_db_prep_value(claimed_at, connection)]
    rows = ", ".join(["(%s, %s, %s)"] * len(sent))
    sql = (
        f"UPDATE {table} SET status = %s, sent_at = v.column2, provider_message_id = v.column3, last_error = ''"
        f" FROM (VALUES {rows}) AS v"
        f" WHERE {table}.id = v.column1 AND {table}.status = %s AND {table}.sending_at = %s"
        f" RETURNING {table}.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {pk for (pk,) in cursor.fetchall()}


def _attempt_logged(attempt, outcome, delay):
    """One line per attempt. The recipient and the message stay out of it; the
    error text is the channel's, which never carries the bot token."""
    notification = attempt.notification
    fields = {
        "notification_id": notification.pk,
        "channel": str(notification.channel),
        "attempt": notification.attempts,
        "outcome": str(outcome),
        "error": str(attempt.error) if attempt.error else None,
        "duration_ms": round((attempt.finished - attempt.started).total_seconds() * 1000, 1),
        "request_id": request_id_current(),
    }
    if delay is not None:
        fields["retry_in_s"] = round(delay, 1)
    level = logging.INFO if outcome == AttemptOutcome.SENT else logging.WARNING
    line = "Notification %(notification_id)s (%(channel)s) attempt %(attempt)s: %(outcome)s"
    delivery_logger.log(level, line, fields, extra=fields)


# The batch wraps the transaction, so what its commit counts reaches the
# metrics store in one round trip per recorded batch.
@metrics.batch()
@transaction.atomic
def _attempts_record(claimed_at, attempts):
    """Write the attempts and move each row on, if it is still ours: a worker
    that took over a stale claim owns it now. Sent rows move in one update."""
    ours = Notification.objects.filter(status=NotificationStatus.SENDING, sending_at=claimed_at)
    log, sent, moved = [], {}, set()
    for attempt in attempts:
        notification, error = attempt.notification, attempt.error
        outcome, changes, delay = _outcome(attempt)
        _attempt_logged(attempt, outcome, delay)
        log.append(
            NotificationAttempt(
                notification=notification,
                number=notification.attempts,
                started_at=attempt.started,
                finished_at=attempt.finished,
                outcome=outcome,
                error=str(error or ""),
                provider_message_id=attempt.provider_message_id,
            )
        )
        for name, value in changes.items():
            setattr(notification, name, value)
        if outcome == AttemptOutcome.SENT:
            sent[notification.pk] = attempt
        elif ours.filter(pk=notification.pk).update(**changes):
            moved.add(notification.pk)
            if delay is not None:
                retry = [(notification.pk, notification.priority)]
                enqueue = partial(
                    notifications_enqueue, retry, delay_ms=int(delay * 1000), request_id=request_id_current()
                )
                transaction.on_commit(enqueue, robust=True)
        if isinstance(error, RecipientBlocked):
            _telegram_turn_off(notification)
    NotificationAttempt.objects.bulk_create(log)
    if sent:
        moved.update(_mark_sent(claimed_at, sent))
    # Only rows this worker moved on: a status it did not save must not be announced.
    changed = [a.notification for a in attempts if a.notification.pk in moved]
    _notifications_announce(changed, old_status=NotificationStatus.SENDING)
    _failures_alert([n for n in changed if n.status == NotificationStatus.FAILED])
    metrics.notifications_count_on_commit(
        finished=[n for n in changed if n.status in FINAL_STATUSES],
        retried=[n for n in changed if n.status == NotificationStatus.PENDING],
    )


def _failures_alert(failed):
    """Tell the sender of each notification in `failed`, in their inbox; a
    failed alert alerts no one."""
    failed = [n for n in failed if n.sender_id is not None and n.kind != NotificationKind.DELIVERY_FAILED]
    senders = get_user_model().objects.filter(is_active=True).in_bulk({n.sender_id for n in failed}) if failed else {}
    items = []
    for notification in failed:
        sender = senders.get(notification.sender_id)
        if sender is None:
            continue
        context = {"notification": notification}
        template = f"notify/{NotificationKind.DELIVERY_FAILED}"
        items.append(
            {
                "kind": NotificationKind.DELIVERY_FAILED,
                "channel": Channel.IN_APP,
                "recipient": sender.get_username(),
                "title": _subject(template, context),
                "message": render_to_string(f"{template}/body.txt", context).strip(),
            }
        )
    if items:
        _notifications_create(sender=None, items=items)


def _telegram_turn_off(notification):
    """The chat blocked the bot: stop order updates to it over Telegram."""
    from orders.services import preferences_update  # orders.services imports this module

    customers = Customer.objects.filter(telegram_chat_id=int(notification.recipient))
    for customer in customers:
        preferences_update(customer=customer, by=None, telegram_enabled=False)


def notifications_sweep():
    """Re-enqueue what fell through: rows whose enqueue was lost, retries whose
    delayed message vanished, and rows a dead worker left `sending`.

    Returns how many rows were enqueued again.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.NOTIFY_STALE_AFTER_SECONDS)
    dead = now - timedelta(seconds=settings.NOTIFY_SENDING_TIMEOUT_SECONDS)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=stale)
    lost = Q(status=NotificationStatus.PENDING, created_at__lt=stale) & due
    waiting = Q(status=NotificationStatus.QUEUED, queued_at__lt=stale) & due
    abandoned = Q(status=NotificationStatus.SENDING, sending_at__lt=dead)
    rows = list(
        Notification.objects.filter(lost | waiting | abandoned).order_by("pk").values_list("pk", "priority")[:10_000]
    )
    if rows:
        notifications_enqueue(rows)
        logger.info("Sweeper enqueued %d notifications again", len(rows))
    return len(rows)
