from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.Model):
    """One state change, as pushed to sockets: written in the transaction of
    the change, so the log holds exactly what happened, in commit order."""

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Who may see it besides staff, decided when it happened (the REST rules).
    audience = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.id} {self.type}"

    def envelope(self):
        return {"id": self.id, "type": self.type, "ts": self.created_at.isoformat(), "data": self.data}


class PruneMark(models.Model):
    """One row: the newest event id pruned so far. A client resuming from
    before it may have missed events, and must reload instead."""

    pruned_through = models.BigIntegerField(default=0)

    def __str__(self):
        return f"events pruned through {self.pruned_through}"
