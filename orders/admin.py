from django.contrib import admin

from orders.models import Customer, NotificationPreference, Order, OrderEvent


class NotificationPreferenceInline(admin.StackedInline):
    model = NotificationPreference
    can_delete = False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "phone", "telegram_chat_id", "country", "created_by", "created_at"]
    search_fields = ["name", "email", "phone"]
    list_filter = ["country"]
    raw_id_fields = ["created_by"]
    inlines = [NotificationPreferenceInline]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["customer", "email_enabled", "telegram_enabled", "order_updates", "promotional"]
    list_filter = ["email_enabled", "telegram_enabled", "order_updates", "promotional"]
    raw_id_fields = ["customer"]


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    fields = ["created_at", "kind", "from_status", "to_status", "changes", "actor"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-mostly: status changes belong to the API, which records history and notifies."""

    list_display = ["order_number", "customer", "status", "total_amount", "currency", "tracking_number", "updated_at"]
    list_filter = ["status", "shipping_method", "currency"]
    search_fields = ["order_number", "tracking_number", "customer__email", "customer__name"]
    readonly_fields = ["status", "order_number", "tracking_number", "created_by", "created_at", "updated_at"]
    raw_id_fields = ["customer"]
    inlines = [OrderEventInline]
