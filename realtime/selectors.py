from django.db.models import Max

from realtime.models import Event, PruneMark


def events_after(*, user, after, limit=500):
    """The next `limit` events after id `after` that `user` may see, oldest first."""
    events = Event.objects.filter(id__gt=after)
    if not user.is_staff:
        events = events.filter(audience=user)
    return list(events.order_by("id")[:limit])


def events_resumable_from(after):
    """False if the log cannot say what came after `after`: events after it
    were pruned, or it is beyond the newest (a client of another log)."""
    pruned_through = PruneMark.objects.values_list("pruned_through", flat=True).first() or 0
    newest = Event.objects.aggregate(newest=Max("id"))["newest"] or 0
    return pruned_through <= after <= max(newest, pruned_through)
