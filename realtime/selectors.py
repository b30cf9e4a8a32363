from django.db.models import Max, Q

from realtime.models import Event, PruneMark


def events_after(*, user, after, before=None, limit=500):
    """The next `limit` events after id `after` (and before `before`) that
    `user` may see, oldest first."""
    events = Event.objects.filter(id__gt=after)
    if before is not None:
        events = events.filter(id__lt=before)
    mine = Q(audience=user)
    if user.is_staff:
        # Every event but other users' private ones; their own through a
        # subquery, so a join does not repeat an event per audience member.
        mine = Q(private=False) | Q(pk__in=Event.audience.through.objects.filter(user=user).values("event_id"))
    events = events.filter(mine)
    return list(events.order_by("id")[:limit])


def _log_bounds():
    """(newest id pruned, newest id handed out, kept or pruned); 0 for none."""
    pruned_through = PruneMark.objects.values_list("pruned_through", flat=True).first() or 0
    newest = Event.objects.aggregate(newest=Max("id"))["newest"] or 0
    return pruned_through, max(newest, pruned_through)


def events_position():
    """The newest id the log has handed out, kept or pruned (0 for none):
    resuming from it brings every event that commits from now on."""
    return _log_bounds()[1]


def events_resumable_from(after):
    """False if the log cannot say what came after `after`: events after it
    were pruned, or it is beyond the newest (a client of another log)."""
    pruned_through, position = _log_bounds()
    return pruned_through <= after <= position
