"""Admin pages write through the services too, so history and rules hold there as well."""

from django import forms
from django.contrib import admin

from core.admin import HistoryInline
from orders import services
from orders.models import Customer, NotificationPreference, Order, OrderEvent, order_status_next


def _changed(form, allowed):
    return {name: form.cleaned_data[name] for name in form.changed_data if name in allowed}


class NotificationPreferenceInline(admin.StackedInline):
    model = NotificationPreference
    fields = sorted(services.PREFERENCE_FIELDS)
    can_delete = False
    max_num = 1


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "phone", "telegram_chat_id", "country", "owner", "created_by", "created_at"]
    search_fields = ["name", "email", "phone"]
    list_filter = ["country"]
    fields = ["name", "email", "phone", "telegram_chat_id", "address", "city", "country", "postal_code", "owner"]
    # The hub sets the owner: an account's first order, or a claim after verifying its email.
    readonly_fields = ["owner"]

    def get_inlines(self, request, obj):
        # A new customer gets its preferences from customer_create.
        return [NotificationPreferenceInline] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            services.customer_update(customer=obj, by=request.user, **_changed(form, services.CUSTOMER_FIELDS))
        else:
            data = {name: form.cleaned_data[name] for name in services.CUSTOMER_FIELDS if name in form.cleaned_data}
            obj.pk = services.customer_create(by=request.user, **data).pk

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            if inline_form.has_changed():
                services.preferences_update(
                    customer=form.instance, by=request.user, **_changed(inline_form, services.PREFERENCE_FIELDS)
                )


class OrderEventInline(HistoryInline):
    model = OrderEvent
    fields = ["created_at", "kind", "from_status", "to_status", "changes", "actor"]


class OrderAdminForm(forms.ModelForm):
    class Meta:
        model = Order
        fields = ["status", *sorted(services.ORDER_UPDATE_FIELDS)]

    def clean_status(self):
        status, current = self.cleaned_data["status"], self.instance.status
        allowed = order_status_next(current)
        if status != current and status not in allowed:
            raise forms.ValidationError(
                f"An order that is {current} cannot become {status}; allowed next: {', '.join(allowed) or 'none'}."
            )
        return status


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders are placed over the API; here staff edit them, and status moves follow the state machine."""

    list_display = ["order_number", "customer", "status", "total_amount", "currency", "tracking_number", "updated_at"]
    list_select_related = ["customer"]
    list_filter = ["status", "shipping_method", "currency"]
    search_fields = ["order_number", "tracking_number", "customer__email", "customer__name"]
    fields = [
        "order_number",
        "customer",
        "created_by",
        "status",
        "total_amount",
        "currency",
        "shipping_method",
        "shipping_address",
        "tracking_number",
        "notes",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["order_number", "customer", "created_by", "created_at", "updated_at"]
    form = OrderAdminForm
    inlines = [OrderEventInline]

    class Media:
        css = {"all": ["orders/admin.css"]}  # the list's columns that a phone leaves out

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        changes = _changed(form, services.ORDER_UPDATE_FIELDS | {"status"})
        services.order_update(order=obj, by=request.user, **changes)

    def delete_model(self, request, obj):
        services.order_delete(order=obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for order in queryset:
            services.order_delete(order=order, by=request.user)


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["customer", "email_enabled", "telegram_enabled", "order_updates", "promotional"]
    list_filter = ["email_enabled", "telegram_enabled", "order_updates", "promotional"]
    fields = ["customer", *sorted(services.PREFERENCE_FIELDS)]
    readonly_fields = ["customer"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        services.preferences_update(
            customer=obj.customer, by=request.user, **_changed(form, services.PREFERENCE_FIELDS)
        )
