from django.conf import settings
from django.db import models
from django.utils import timezone


class CurrentTransaction(models.Func):
    """The id of the writing transaction: PostgreSQL's top-level one, even
    inside a savepoint. NULL on SQLite, where one writer runs at a time."""

    output_field = models.BigIntegerField()
    template = "NULL"

    def as_postgresql(self, compiler, connection, **extra_context):
        return "pg_current_xact_id()::text::bigint", []


class PendingEvent(models.Model):
    """An event written in the transaction of its change and not yet moved
    into the log by the relay (realtime.relay). Its id orders only; the log
    numbers events itself, in commit order."""

    id = models.BigAutoField(primary_key=True)
    transaction = models.BigIntegerField(null=True, db_default=CurrentTransaction())
    type = models.CharField(max_length=40)
    data = models.JSONField()
    audience = models.JSONField(default=list)  # user ids, as Event.audience
    private = models.BooleanField(default=False)  # as Event.private
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"pending {self.id} {self.type}"


class Event(models.Model):
    """One state change, as pushed to sockets. Its id is its place in commit
    order, given by the relay: increasing, without holes, never reused."""

    id = models.BigIntegerField(primary_key=True)
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Who may see it besides staff, decided when it happened (the REST rules).
    audience = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    # Only the audience sees it, staff included only if named (a user's inbox).
    private = models.BooleanField(default=False)

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
