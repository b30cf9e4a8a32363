import re

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from rest_framework import serializers

from core.serializers import StrictInputMixin
from notify.models import Channel, Inbox, InboxMessage, Notification, NotificationAttempt, NotificationStatus, Priority
from notify.selectors import accounts_active_named
from orders.models import validate_telegram_chat_id

BULK_LIMIT = 1000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _one_line(text):
    """A title becomes the mail's Subject header: no line breaks or other control characters."""
    if _CONTROL_CHARACTERS.search(text):
        raise serializers.ValidationError("One line of text: no line breaks or other control characters.")


def _telegram_chat_id(text):
    """The chat id in `text`, by the same rule as a customer's chat id."""
    try:
        chat_id = int(text)
    except ValueError:
        chat_id = 0  # refused below, with the rule's own message
    validate_telegram_chat_id(chat_id)
    return chat_id


def _accounts_missing(usernames):
    """Those of `usernames` that name no active account."""
    return set(usernames) - set(accounts_active_named(usernames))


NO_ACCOUNT = "No active account has this username."


class NotificationSendSerializer(StrictInputMixin, serializers.Serializer):
    title = serializers.CharField(max_length=200, validators=[_one_line])
    message = serializers.CharField(max_length=20_000)
    recipient_type = serializers.ChoiceField(
        choices=Channel.choices, help_text="The channel: email, telegram, or in_app (the hub's own inbox)."
    )
    recipient = serializers.CharField(
        max_length=254,
        help_text="An email address, a Telegram chat id (an integer, negative for groups), "
        "or for in_app the username of an active account.",
    )
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)

    def validate(self, attrs):
        recipient = attrs["recipient"].strip()
        try:
            if attrs["recipient_type"] == Channel.EMAIL:
                validate_email(recipient)
            elif attrs["recipient_type"] == Channel.TELEGRAM:
                recipient = str(_telegram_chat_id(recipient))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"recipient": exc.messages}) from None
        # A bulk send asks for all its accounts at once (NotificationBulkSerializer).
        if attrs["recipient_type"] == Channel.IN_APP and self.parent is None and _accounts_missing([recipient]):
            raise serializers.ValidationError({"recipient": [NO_ACCOUNT]})
        return {
            "channel": attrs["recipient_type"],
            "recipient": recipient,
            "title": attrs["title"],
            "message": attrs["message"],
            "priority": attrs["priority"],
        }


class NotificationBulkSerializer(StrictInputMixin, serializers.Serializer):
    notifications = NotificationSendSerializer(many=True, allow_empty=False, max_length=BULK_LIMIT)

    def validate(self, attrs):
        items = attrs["notifications"]
        usernames = [item["recipient"] for item in items if item["channel"] == Channel.IN_APP]
        missing = _accounts_missing(usernames) if usernames else set()
        errors = {
            index: {"recipient": [NO_ACCOUNT]}
            for index, item in enumerate(items)
            if item["channel"] == Channel.IN_APP and item["recipient"] in missing
        }
        if errors:
            raise serializers.ValidationError({"notifications": errors})
        return attrs


class NotificationAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationAttempt
        fields = ["number", "outcome", "error", "provider_message_id", "started_at", "finished_at"]


class NotificationSerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(
        read_only=True, allow_blank=True, help_text="Blank when a skipped notification had nowhere to go."
    )
    sender = serializers.CharField(source="sender.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "kind",
            "channel",
            "recipient",
            "title",
            "message",
            "priority",
            "status",
            "attempts",
            "last_error",
            "provider_message_id",
            "customer",
            "order",
            "order_event",
            "sender",
            "created_at",
            "queued_at",
            "sending_at",
            "sent_at",
            "failed_at",
            "next_attempt_at",
        ]
        read_only_fields = fields


class NotificationDetailSerializer(NotificationSerializer):
    attempt_log = NotificationAttemptSerializer(many=True, read_only=True)

    class Meta(NotificationSerializer.Meta):
        fields = NotificationSerializer.Meta.fields + ["attempt_log"]
        read_only_fields = fields


class NotificationBulkResultSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())


def _per_choice(name, choices, **fields):
    """A serializer with a count for every value of `choices` (and `fields`), for the schema to show."""
    counts = {value: serializers.IntegerField(min_value=0) for value in choices.values}
    return type(name, (serializers.Serializer,), {**fields, **counts})


class LatencySerializer(serializers.Serializer):
    median = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class NotificationPeriodStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField(min_value=0)
    by_status = _per_choice("CountsByStatus", NotificationStatus)()
    by_channel = _per_choice("CountsByChannel", Channel)()
    by_priority = _per_choice("CountsByPriority", Priority)()
    success_rate = serializers.FloatField(allow_null=True, help_text="sent ÷ (sent + failed); null before any.")
    latency_seconds = LatencySerializer(help_text="Seconds from creation to sent; null before any sent.")


class NotificationStatsSerializer(serializers.Serializer):
    overall = NotificationPeriodStatsSerializer()
    last_24h = NotificationPeriodStatsSerializer()
    last_hour = _per_choice(
        "SentInMinute", Channel, minute=serializers.DateTimeField(help_text="UTC start of the minute.")
    )(many=True)


class InboxMessageSerializer(serializers.ModelSerializer):
    """A message in its reader's inbox, as the API and the `inbox.*` events show it."""

    class Meta:
        model = InboxMessage
        fields = [
            "id",
            "kind",
            "title",
            "message",
            "order",
            "notification",
            "created_at",
            "seen_at",
            "read_at",
            "archived_at",
        ]
        read_only_fields = fields


class InboxCountsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Inbox
        fields = ["unseen", "unread"]
        read_only_fields = fields


class InboxMarkAllSerializer(StrictInputMixin, serializers.Serializer):
    up_to = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        required=False,
        help_text="Only messages up to this id: the newest the reader had in front of them. All if left out.",
    )


class InboxMarkAllResultSerializer(serializers.Serializer):
    updated = serializers.IntegerField(min_value=0, help_text="How many messages this changed.")
    unseen = serializers.IntegerField(min_value=0)
    unread = serializers.IntegerField(min_value=0)
