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
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from core.exceptions import Conflict
from notify.channels import DeliveryError, PermanentError, RecipientBlocked, TransientError, channel_send
from notify.models import (
    AttemptOutcome,
    Channel,
    IdempotencyKey,
    Notification,
    NotificationAttempt,
    NotificationKind,
    NotificationStatus,
    Priority,
)
from notify.tasks import deliver_actor_for
from orders.models import Customer
from orders.selectors import preferences_get

logger = logging.getLogger(__name__)

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
    return rows


def notifications_enqueue_on_commit(notifications):
    """Hand the rows to the workers once the surrounding transaction commits."""
    ids = [(n.pk, n.priority) for n in notifications if n.status == NotificationStatus.PENDING]
    if ids:
        transaction.on_commit(lambda: notifications_enqueue(ids), robust=True)


def notifications_enqueue(ids_with_priority, *, delay_ms=None):
    """Put (id, priority) pairs on the broker and mark the rows queued as of now.

    Restarting `queued_at` on rows the sweeper enqueues again keeps a slow
    queue from being flooded with copies. If the broker is down the rows stay
    as they are and the sweeper tries again.
    """
    for pk, priority in ids_with_priority:
        deliver_actor_for(priority).send_with_options(args=(pk,), delay=delay_ms)
    waiting = [NotificationStatus.PENDING, NotificationStatus.QUEUED]
    Notification.objects.filter(pk__in=[pk for pk, _ in ids_with_priority], status__in=waiting).update(
        status=NotificationStatus.QUEUED, queued_at=timezone.now()
    )


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
    return ""


def _order_event_rows(order_event):
    order, customer = order_event.order, order_event.order.customer
    kind = _ORDER_EVENT_KINDS[order_event.kind]
    context = {"order": order, "customer": customer, "event": order_event}
    title = " ".join(render_to_string(f"notify/{kind}/subject.txt", context).split())
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
    contents = {
        Channel.EMAIL: {
            "recipient": customer.email,
            "message": render_to_string(f"notify/{kind}/body.txt", context).strip(),
            "html_message": render_to_string(f"notify/{kind}/body.html", {"title": title, **context}),
        },
        Channel.TELEGRAM: {
            "recipient": chat_id,
            "message": render_to_string(f"notify/{kind}/telegram.txt", context).strip(),
        },
    }
    for channel, content in contents.items():
        reason = _skip_reason(customer, preferences, channel)
        skipped = {"status": NotificationStatus.SKIPPED, "last_error": reason} if reason else {}
        yield _build(channel=channel, **content, **base, **skipped)


@transaction.atomic
def notifications_for_order_event(*, order_event):
    """One row per channel for an order's change: to be sent, or skipped with the reason.

    Called inside the order's transaction, so a rollback takes the rows with it.
    """
    if order_event.kind not in _ORDER_EVENT_KINDS:
        return []
    rows = Notification.objects.bulk_create(list(_order_event_rows(order_event)))
    notifications_enqueue_on_commit(rows)
    return rows


@transaction.atomic
def notification_retry(*, notification, by):
    """Staff: send a failed notification again, with a fresh retry budget."""
    updated = Notification.objects.filter(pk=notification.pk, status=NotificationStatus.FAILED).update(
        status=NotificationStatus.PENDING, attempts=0, next_attempt_at=None, failed_at=None
    )
    if not updated:
        raise Conflict("Only failed notifications can be retried.", code="not_failed")
    notification.refresh_from_db()
    notifications_enqueue_on_commit([notification])
    return notification


def _backoff_seconds(attempt, retry_after=None):
    ceiling = min(settings.NOTIFY_RETRY_MAX_SECONDS, settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads retries that failed together
    return max(delay, float(retry_after or 0))


def _claim(pk, now):
    """Take the row for this worker; False if it is not ours to send."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1))
    claim = {"status": NotificationStatus.SENDING, "sending_at": now, "attempts": F("attempts") + 1}
    waiting = [NotificationStatus.PENDING, NotificationStatus.QUEUED]
    if Notification.objects.filter(due, pk=pk, status__in=waiting).update(**claim):
        return True
    # A row left `sending` by a worker that died is taken over after the timeout.
    stale = now - timedelta(seconds=settings.NOTIFY_SENDING_TIMEOUT_SECONDS)
    return bool(
        Notification.objects.filter(pk=pk, status=NotificationStatus.SENDING, sending_at__lt=stale).update(**claim)
    )


def notification_deliver(*, notification_id):
    """Send one notification if it is ours to send; record the attempt and what comes next."""
    started = timezone.now()
    if not _claim(notification_id, started):
        return None
    notification = Notification.objects.get(pk=notification_id)
    provider_message_id, error = "", None
    try:
        provider_message_id = channel_send(notification)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # a bug or an unforeseen failure: retry, and keep the reason
        logger.exception("Unexpected error delivering notification %s", notification_id)
        error = TransientError(f"{type(exc).__name__}: {exc}")
    return _attempt_record(notification, started, provider_message_id, error)


@transaction.atomic
def _attempt_record(notification, started, provider_message_id, error):
    now = timezone.now()
    out_of_retries = notification.attempts > settings.NOTIFY_MAX_RETRIES
    if error is None:
        outcome = AttemptOutcome.SENT
        changes = {"status": NotificationStatus.SENT, "sent_at": now, "provider_message_id": provider_message_id}
    elif isinstance(error, PermanentError) or out_of_retries:
        outcome = AttemptOutcome.FAILED
        reason = (
            str(error)
            if isinstance(error, PermanentError)
            else f"{error} (gave up after {notification.attempts} attempts)"
        )
        changes = {"status": NotificationStatus.FAILED, "failed_at": now, "last_error": reason}
    else:
        outcome = AttemptOutcome.RETRY
        delay = _backoff_seconds(notification.attempts, error.retry_after)
        changes = {
            "status": NotificationStatus.PENDING,
            "last_error": str(error),
            "next_attempt_at": now + timedelta(seconds=delay),
        }
    NotificationAttempt.objects.create(
        notification=notification,
        number=notification.attempts,
        started_at=started,
        finished_at=now,
        outcome=outcome,
        error=str(error or ""),
        provider_message_id=provider_message_id,
    )
    # Only if the row is still ours: a worker that took over a stale claim owns it now.
    still_ours = Notification.objects.filter(
        pk=notification.pk, status=NotificationStatus.SENDING, sending_at=notification.sending_at
    ).update(**changes)
    for name, value in changes.items():
        setattr(notification, name, value)
    if outcome == AttemptOutcome.RETRY and still_ours:
        delay_ms = int(delay * 1000)
        transaction.on_commit(
            lambda: notifications_enqueue([(notification.pk, notification.priority)], delay_ms=delay_ms), robust=True
        )
    if isinstance(error, RecipientBlocked):
        _telegram_turn_off(notification)
    return notification


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
    rows = list(Notification.objects.filter(lost | waiting | abandoned).values_list("pk", "priority")[:10_000])
    if rows:
        notifications_enqueue(rows)
        logger.info("Sweeper enqueued %d notifications again", len(rows))
    return len(rows)
