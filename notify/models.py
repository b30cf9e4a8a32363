from django.conf import settings
from django.db import models


class Channel(models.TextChoices):
    EMAIL = "email"
    TELEGRAM = "telegram"
    IN_APP = "in_app"  # the recipient is an account: the message goes to its inbox in the hub


class Priority(models.TextChoices):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


URGENT_PRIORITIES = {Priority.HIGH, Priority.URGENT}


class NotificationStatus(models.TextChoices):
    PENDING = "pending"  # written; its enqueue runs when the transaction commits
    QUEUED = "queued"  # on the broker, waiting for a worker (first time or retry)
    SENDING = "sending"  # claimed by a worker
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # never sent: the customer's preferences or contacts rule it out


FINAL_STATUSES = {NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.SKIPPED}


class NotificationKind(models.TextChoices):
    MANUAL = "manual"
    ORDER_CREATED = "order_created"
    ORDER_STATUS_CHANGED = "order_status_changed"
    # The code a registration mails to prove the address; only staff see the row.
    EMAIL_VERIFICATION = "email_verification"
    # To the sender's inbox, when one of their notifications ended failed.
    DELIVERY_FAILED = "delivery_failed"


class Notification(models.Model):
    """One message to one recipient over one channel: the delivery ledger and the outbox.

    Written in the transaction of the change that causes it; workers move it
    through its statuses and record every attempt.
    """

    kind = models.CharField(max_length=30, choices=NotificationKind.choices, default=NotificationKind.MANUAL)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    recipient = models.CharField(max_length=254)
    title = models.CharField(max_length=200)
    message = models.TextField()
    # Email only: the HTML alternative, rendered when the row is written.
    html_message = models.TextField(blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # `attempts` when staff last retried the row: its retry budget counts from there.
    attempts_before_retry = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The provider's id of what went out; for a Telegram message split in
    # parts, the parts' ids, comma-separated, as they go out.
    provider_message_id = models.CharField(max_length=255, blank=True)
    customer = models.ForeignKey(
        "orders.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    order_event = models.ForeignKey(
        "orders.OrderEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications_sent",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # A retry waits for this moment; the worker will not claim the row before it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweeper's scan and the status filters.
            models.Index(fields=["status", "queued_at"]),
        ]

    def __str__(self):
        return f"{self.channel} to {self.recipient}: {self.title}"


class AttemptOutcome(models.TextChoices):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    NOT_DELIVERED = "not_delivered"  # the channel is not set up here: shown on the console


class NotificationAttempt(models.Model):
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self):
        return f"attempt {self.number} of {self.notification_id}: {self.outcome}"


class IdempotencyKey(models.Model):
    """What a send or bulk request with an `Idempotency-Key` header created, to answer its repeats."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    notification_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="notify_idempotency_key_unique")]

    def __str__(self):
        return f"{self.user_id}:{self.key}"


class InboxMessage(models.Model):
    """An `in_app` notification as it reached its recipient's inbox: a copy of
    what was sent, and where the reader is with it. Unseen until the inbox is
    opened (`seen_at`), unread until read (`read_at`); archived ones leave the
    counts. Written by notify.inbox only, which keeps the user's Inbox counts."""

    # No index of its own: the unique (user, number) index serves every lookup by user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox_messages", db_index=False
    )
    # Its place in its user's inbox, 1, 2, …, in the order they arrived.
    number = models.PositiveBigIntegerField()
    # One message per notification, however often its delivery runs.
    notification = models.OneToOneField(
        Notification, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbox_message"
    )
    kind = models.CharField(max_length=30, choices=NotificationKind.choices)
    title = models.CharField(max_length=200)
    message = models.TextField()
    # The order it was about, as a reference only: a worker may store a message
    # while the order is being deleted, and the message outlives the order.
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    seen_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        # Each list and count reads one user's slice of one of these, newest
        # first: a page costs what it returns, not the table's size. Pages go
        # by `number`, not by id: no index but these gives that order, so no
        # plan can walk the primary key back through other users' newer rows
        # (for a user whose messages are all old, that walk read 850,000 rows).
        constraints = [models.UniqueConstraint(fields=["user", "number"], name="notify_inbox_number_unique")]
        indexes = [
            models.Index(
                fields=["user", "-number"], name="notify_inbox_kept", condition=models.Q(archived_at__isnull=True)
            ),
            models.Index(
                fields=["user", "-number"],
                name="notify_inbox_unread",
                condition=models.Q(read_at__isnull=True, archived_at__isnull=True),
            ),
        ]

    def __str__(self):
        return f"to {self.user_id}: {self.title}"


class Inbox(models.Model):
    """A user's inbox counts, kept by every write to their messages. Its row is
    also the lock those writes take, so they run one at a time per user and
    every count they publish is the one they leave."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE)
    unseen = models.PositiveIntegerField(default=0)  # not archived, not yet seen
    unread = models.PositiveIntegerField(default=0)  # not archived, not yet read
    delivered = models.PositiveBigIntegerField(default=0)  # messages ever stored: the last one's number

    class Meta:
        verbose_name_plural = "inboxes"

    def __str__(self):
        return f"inbox of {self.user_id}: {self.unread} unread"

    def counts(self):
        return {"unseen": self.unseen, "unread": self.unread}
