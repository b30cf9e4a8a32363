"""Every write to the event log, and the one-time tickets browsers connect with."""

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.db import db_retry_once
from realtime.fanout import credentials_publish
from realtime.models import Event, PendingEvent, PruneMark
from realtime.relay import relay_wake

TICKET_TTL_SECONDS = 30


@transaction.atomic(savepoint=False)
def events_record(specs):
    """Write events (from realtime.events builders, each with its audience) in
    the current transaction; once it commits, the relay gives them their place
    in the log and sends them to everyone who may see them."""
    pending = PendingEvent.objects.bulk_create(
        [
            PendingEvent(type=spec.type, data=spec.data, audience=sorted(spec.audience), private=spec.private)
            for spec in specs
        ]
    )
    if pending:
        # The relay polls too: a wake-up lost with a dropped connection only delays.
        transaction.on_commit(partial(db_retry_once, relay_wake), robust=True)
    return pending


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


def credentials_end_on_commit(user_id, *, token=None, session=None, reason):
    """Once the transaction commits, close the user's sockets opened with this
    token or session (with neither: all of them), on every web process."""
    message = {"token": token, "session": session, "reason": reason}
    transaction.on_commit(partial(credentials_publish, user_id, message), robust=True)


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
