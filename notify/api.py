from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from core.permissions import IsStaff
from core.schema import error_response
from core.throttles import ScopedThrottle
from notify import selectors, services
from notify.filters import NotificationFilter
from notify.models import Notification
from notify.serializers import (
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
            '`{"minute": "<UTC start of the minute>", "email": n, "telegram": n}`, the notifications sent '
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
        request_body=None,
        responses={202: NotificationSerializer, 409: error_response("Not failed")},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def retry(self, request, pk=None):
        notification = services.notification_retry(notification=self.get_object(), by=request.user)
        return Response(NotificationSerializer(notification).data, status=status.HTTP_202_ACCEPTED)
