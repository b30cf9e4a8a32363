"""Every write to the in-app inbox: `in_app` notifications delivered into it,
and what their reader does with them.

Each write locks the user's Inbox row first, so one user's writes run one at
a time, whichever process makes them, and each keeps the counts on that row
in step with the messages. The counts a write publishes are the ones it
leaves, so the last `inbox.counts_changed` a socket gets is the inbox as it
stands. Other users' writes do not wait.
"""

from django.db import transaction
from django.utils import timezone
from rest_framework.fields import DateTimeField

from notify.models import Inbox, InboxMessage
from notify.serializers import InboxMessageSerializer
from realtime import events
from realtime.services import events_record


def _inbox_locked(user_id):
    """The user's Inbox row, made if it is the first write, locked to the end of the transaction."""
    Inbox.objects.bulk_create([Inbox(user_id=user_id)], ignore_conflicts=True)
    return Inbox.objects.select_for_update().get(user_id=user_id)


def _counted(message):
    """(unseen, unread): what `message` adds to its inbox's counts, 0 or 1 each."""
    kept = message.archived_at is None
    return int(kept and message.seen_at is None), int(kept and message.read_at is None)


def _message_data(message):
    return dict(InboxMessageSerializer(message).data)


@transaction.atomic
def inbox_message_deliver(*, notification, user):
    """Store an `in_app` notification in `user`'s inbox, unseen and unread, once:
    a delivery that runs again (its worker died before recording it) finds the
    message already there and changes nothing."""
    inbox = _inbox_locked(user.pk)
    message = InboxMessage.objects.filter(notification=notification).first()
    if message is not None:
        return message
    inbox.delivered += 1
    message = InboxMessage.objects.create(
        user=user,
        number=inbox.delivered,
        notification=notification,
        kind=notification.kind,
        title=notification.title,
        message=notification.message,
        order_id=notification.order_id,
    )
    inbox.unseen, inbox.unread = inbox.unseen + 1, inbox.unread + 1
    inbox.save()
    events_record(
        [
            events.inbox_message_created(_message_data(message), owner_id=user.pk),
            events.inbox_counts_changed(inbox.counts(), owner_id=user.pk),
        ]
    )
    return message


def _read(message, now):
    message.read_at = message.read_at or now
    message.seen_at = message.seen_at or now  # what was read was seen


def _unread(message, now):
    message.read_at = None


def _archive(message, now):
    message.archived_at = message.archived_at or now


def _unarchive(message, now):
    message.archived_at = None


INBOX_CHANGES = {"read": _read, "unread": _unread, "archive": _archive, "unarchive": _unarchive}
_STATE_FIELDS = ["seen_at", "read_at", "archived_at"]


@transaction.atomic
def inbox_message_change(*, message, change):
    """Apply `change` (a key of INBOX_CHANGES) to one message. Doing what is
    done already (reading a read message) changes nothing and says nothing."""
    inbox = _inbox_locked(message.user_id)
    message = InboxMessage.objects.get(pk=message.pk)  # as it stands now that its inbox is ours
    state, (was_unseen, was_unread) = [getattr(message, name) for name in _STATE_FIELDS], _counted(message)
    INBOX_CHANGES[change](message, timezone.now())
    if [getattr(message, name) for name in _STATE_FIELDS] == state:
        return message
    message.save(update_fields=_STATE_FIELDS)
    specs = [events.inbox_message_changed(_message_data(message), owner_id=message.user_id)]
    unseen, unread = _counted(message)
    if (unseen, unread) != (was_unseen, was_unread):
        inbox.unseen += unseen - was_unseen
        inbox.unread += unread - was_unread
        inbox.save()
        specs.append(events.inbox_counts_changed(inbox.counts(), owner_id=message.user_id))
    events_record(specs)
    return message


@transaction.atomic
def inbox_mark_all(*, user, state, up_to=None):
    """Mark every message of `user`'s inbox (archived ones aside) `state`,
    "seen" or "read" (which is seen too), up to id `up_to` if given: what the
    reader had in front of them. Returns (how many changed, the counts after).

    One event says so for all of them, not one per message."""
    inbox = _inbox_locked(user.pk)
    now = timezone.now()
    kept = InboxMessage.objects.filter(user=user, archived_at__isnull=True)
    if up_to is not None:
        kept = kept.filter(pk__lte=up_to)
    seen = kept.filter(seen_at__isnull=True).update(seen_at=now)
    read = kept.filter(read_at__isnull=True).update(read_at=now) if state == "read" else 0
    if seen or read:
        inbox.unseen -= seen
        inbox.unread -= read
        inbox.save()
        marked_all = {"state": state, "up_to": up_to, "at": DateTimeField().to_representation(now)}
        events_record([events.inbox_counts_changed(inbox.counts(), owner_id=user.pk, marked_all=marked_all)])
    return (read if state == "read" else seen), inbox.counts()
