from drf_yasg import openapi
from drf_yasg.utils import no_body, swagger_auto_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from core.filters import FilterBackend, KnownQueryParams
from core.input import body_refused
from core.pagination import CursorPagination
from core.permissions import IsStaff
from core.schema import error_response
from core.throttles import ScopedThrottle
from notify import inbox, selectors, services
from notify.filters import InboxFilter, NotificationFilter
from notify.models import InboxMessage, Notification
from notify.serializers import (
    InboxCountsSerializer,
    InboxMarkAllResultSerializer,
    InboxMarkAllSerializer,
    InboxMessageSerializer,
    NotificationBulkResultSerializer,
    NotificationBulkSerializer,
    NotificationDetailSerializer,
    NotificationSendSerializer,
    NotificationSerializer,
    NotificationStatsSerializer,
)

IDEMPOTENCY_HEADER = openapi.Parameter(
    "Idempotency-Key",
    openapi.IN_HEADER,
    type=openapi.TYPE_STRING,
    description="Repeat a request with the same key and body to get the same notifications, never a second send.",
)


def _idempotency_key(request):
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > 255:
        raise ValidationError({"Idempotency-Key": ["At most 255 characters."]})
    return key


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The notification ledger: what you sent, and what concerns your orders and customers; staff see all."""

    filterset_class = NotificationFilter
    ordering_fields = ["created_at", "sent_at", "priority", "status"]
    ordering = ["-created_at", "-id"]
    throttle_scope = "notify_send"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Notification.objects.none()
        notifications = selectors.notification_list(user=self.request.user).select_related("sender")
        if self.action == "retrieve":
            notifications = notifications.prefetch_related("attempt_log")
        return notifications

    def get_serializer_class(self):
        return NotificationDetailSerializer if self.action == "retrieve" else NotificationSerializer

    def get_permissions(self):
        if self.action == "retry":
            return [IsAuthenticated(), IsStaff()]
        return [IsAuthenticated()]

    def get_throttles(self):
        return [ScopedThrottle()] if self.action in ("send", "bulk") else []

    @swagger_auto_schema(
        operation_summary="Send one notification",
        operation_description="Accepted for delivery (202); follow its `status`. A repeat with the same "
        "`Idempotency-Key` and body answers with the same notification.",
        request_body=NotificationSendSerializer,
        manual_parameters=[IDEMPOTENCY_HEADER],
        responses={202: NotificationSerializer, 409: error_response("Idempotency-Key reused with another body")},
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def send(self, request):
        serializer = NotificationSendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        notification, _ = services.notification_send(
            sender=request.user, idempotency_key=_idempotency_key(request), **serializer.validated_data
        )
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)

    @swagger_auto_schema(
        operation_summary="Send up to 1,000 notifications",
        operation_description="All or nothing: one invalid item refuses the whole batch, with errors keyed "
        "`notifications[i].field`.",
        request_body=NotificationBulkSerializer,
        manual_parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: NotificationBulkResultSerializer,
            409: error_response("Idempotency-Key reused with another body"),
        },
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def bulk(self, request):
        serializer = NotificationBulkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        notifications, _ = services.notifications_bulk_send(
            sender=request.user,
            items=serializer.validated_data["notifications"],
            idempotency_key=_idempotency_key(request),
        )
        ids = [n.pk for n in notifications]
        return Response({"count": len(ids), "ids": ids}, status=status.HTTP_202_ACCEPTED)

    @swagger_auto_schema(
        operation_summary="Delivery statistics, overall, for the last 24 hours and per minute for the last hour",
        operation_description=(
            "`overall` and `last_24h`: counts by status, channel and priority, success rate and latency. "
            "`last_hour`: 60 per-minute buckets, oldest first, the last one the current minute; each is "
            '`{"minute": "<UTC start of the minute>", "email": n, "telegram": n, "in_app": n}`, the notifications sent '
            "(by `sent_at`) in that minute."
        ),
        responses={200: NotificationStatsSerializer},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def stats(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        return Response(selectors.notification_stats(queryset=queryset))

    @swagger_auto_schema(
        operation_summary="Retry a failed notification (staff)",
        request_body=no_body,
        responses={202: NotificationSerializer, 409: error_response("Not failed")},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def retry(self, request, pk=None):
        body_refused(request)
        notification = services.notification_retry(notification=self.get_object(), by=request.user)
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)


def _message_change_schema(summary):
    return swagger_auto_schema(operation_summary=summary, request_body=no_body, responses={200: InboxMessageSerializer})


def _mark_all_schema(summary):
    return swagger_auto_schema(
        operation_summary=summary,
        operation_description="Archived messages aside. `up_to`: only messages up to this id, the newest the "
        "reader had in front of them, so one that arrived meanwhile stays as it was. No body: all of them.",
        request_body=InboxMarkAllSerializer,
        body_optional=True,
        responses={200: InboxMarkAllResultSerializer},
    )


class InboxViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your inbox: the in-app messages sent to your account, newest first. No
    one sees another's, staff included. Every change here is an `inbox.*` event
    on your sockets, so your other tabs and devices follow at once."""

    serializer_class = InboxMessageSerializer
    filterset_class = InboxFilter
    filter_backends = [KnownQueryParams, FilterBackend]  # newest first, no other order
    pagination_class = CursorPagination
    ordering = "-number"  # newest first; see InboxMessage.Meta

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return InboxMessage.objects.none()
        messages = selectors.inbox_message_list(user=self.request.user)
        if self.action == "list" and not self.request.query_params.get("archived"):
            messages = messages.filter(archived_at__isnull=True)  # the inbox, not the archive
        return messages

    # drf_yasg calls a retrieve `read`, which is this view set's action to mark one read.
    @swagger_auto_schema(operation_id="inbox_get", operation_summary="Get one message of your inbox")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @swagger_auto_schema(
        operation_summary="Your inbox's unseen and unread counts",
        operation_description="Archived messages aside. Unseen: not yet shown (see `POST /inbox/seen/`); "
        "unread: not yet read.",
        responses={200: InboxCountsSerializer},
    )
    @action(detail=False, methods=["get"], filter_backends=[KnownQueryParams], pagination_class=None)
    def counts(self, request):
        return Response(selectors.inbox_counts(user=request.user))

    def _change(self, change):
        body_refused(self.request)
        message = inbox.inbox_message_change(message=self.get_object(), change=change)
        return Response(InboxMessageSerializer(message).data)

    @_message_change_schema("Mark a message read (and seen)")
    @action(detail=True, methods=["post"], filter_backends=[])
    def read(self, request, pk=None):
        return self._change("read")

    @_message_change_schema("Mark a message unread")
    @action(detail=True, methods=["post"], filter_backends=[])
    def unread(self, request, pk=None):
        return self._change("unread")

    @_message_change_schema("Archive a message: it leaves the inbox and its counts")
    @action(detail=True, methods=["post"], filter_backends=[])
    def archive(self, request, pk=None):
        return self._change("archive")

    @_message_change_schema("Bring a message back from the archive")
    @action(detail=True, methods=["post"], filter_backends=[])
    def unarchive(self, request, pk=None):
        return self._change("unarchive")

    def _mark_all(self, request, state):
        serializer = InboxMarkAllSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        updated, counts = inbox.inbox_mark_all(user=request.user, state=state, **serializer.validated_data)
        return Response({"updated": updated, **counts})

    @_mark_all_schema("Mark the inbox seen: the reader has had it in front of them")
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def seen(self, request):
        return self._mark_all(request, "seen")

    @_mark_all_schema("Mark the whole inbox read")
    @action(detail=False, methods=["post"], url_path="read-all", filter_backends=[], pagination_class=None)
    def read_all(self, request):
        return self._mark_all(request, "read")
