from django.contrib import admin, messages

from core.admin import HistoryInline
from core.exceptions import Conflict
from notify import services
from notify.models import Notification, NotificationAttempt, NotificationStatus


class NotificationAttemptInline(HistoryInline):
    model = NotificationAttempt
    fields = ["number", "outcome", "error", "provider_message_id", "started_at", "finished_at"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Read-only: the ledger changes through delivery, and through the retry action."""

    list_display = ["id", "channel", "recipient", "title", "priority", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["status", "channel", "priority", "kind"]
    search_fields = ["recipient", "title", "order__order_number"]
    date_hierarchy = "created_at"
    inlines = [NotificationAttemptInline]
    actions = ["retry_failed"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Retry the selected failed notifications", permissions=["view"])
    def retry_failed(self, request, queryset):
        retried = 0
        for notification in queryset.filter(status=NotificationStatus.FAILED):
            try:
                services.notification_retry(notification=notification, by=request.user)
                retried += 1
            except Conflict:
                pass  # no longer failed: someone retried it meanwhile
        skipped = queryset.count() - retried
        self.message_user(request, f"Retrying {retried} notification(s); {skipped} were not failed.", messages.INFO)
