import re
from decimal import Decimal

import pycountry
from django.core.validators import RegexValidator
from rest_framework import serializers

from core.serializers import StrictInputMixin
from orders.models import (
    TELEGRAM_CHAT_ID_LIMIT,
    Customer,
    NotificationPreference,
    Order,
    OrderEvent,
    OrderStatus,
    ShippingMethod,
    code_validator,
    order_status_next,
    phone_validator,
)

_PHONE_PUNCTUATION = re.compile(r"[ ().-]")
# E.164 with the punctuation _PHONE_PUNCTUATION drops anywhere, or blank for none.
_PHONE_INPUT = r"^[ ().-]*(\+[ ().-]*[1-9]([ ().-]*[0-9]){1,14}[ ().-]*)?$"


class PhoneField(serializers.CharField):
    """A phone number, kept in E.164: "+1 (415) 555-0123" is "+14155550123"."""

    def __init__(self, **kwargs):
        validators = [RegexValidator(_PHONE_INPUT, phone_validator.message)]
        super().__init__(required=False, allow_blank=True, validators=validators, **kwargs)

    def to_internal_value(self, data):
        return _PHONE_PUNCTUATION.sub("", super().to_internal_value(data))


class CustomerSerializer(StrictInputMixin, serializers.ModelSerializer):
    phone = PhoneField(help_text="E.164, e.g. +14155550123; spaces, dots, dashes and brackets are dropped.")

    class Meta:
        model = Customer
        fields = [
            "id",
            "name",
            "email",
            "phone",
            "telegram_chat_id",
            "address",
            "city",
            "country",
            "postal_code",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Uniqueness is the service's to check (case-insensitively).
        validators = []
        extra_kwargs = {
            "telegram_chat_id": {
                "help_text": "Telegram chat id: a non-zero integer, negative for groups.",
                "min_value": 1 - TELEGRAM_CHAT_ID_LIMIT,
                "max_value": TELEGRAM_CHAT_ID_LIMIT - 1,
            },
        }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            # A blank chat id means "none".
            if data.get("telegram_chat_id") == "":
                data = {**data, "telegram_chat_id": None}
        return super().to_internal_value(data)


class NotificationPreferenceSerializer(StrictInputMixin, serializers.ModelSerializer):
    class Meta:
        model = NotificationPreference
        fields = ["email_enabled", "telegram_enabled", "in_app_enabled", "order_updates", "promotional", "updated_at"]
        read_only_fields = ["updated_at"]


class MoneyField(serializers.DecimalField):
    """A positive amount, sent as a string of up to 10 digits and 2 decimal places: "149.99"."""

    pattern = RegexValidator(
        r"^(?!0+(\.0+)?$)[0-9]{1,10}(\.[0-9]{1,2})?$",
        'Send the amount as a string such as "149.99": above 0, up to 10 digits and 2 decimal places.',
    )

    def __init__(self, **kwargs):
        super().__init__(max_digits=12, decimal_places=2, min_value=Decimal("0.01"), **kwargs)
        self.validators.append(self.pattern)  # for the schema; the sent text is held to it below

    def to_internal_value(self, data):
        self.pattern(data if isinstance(data, str) else None)
        return super().to_internal_value(data)


# Read once: a serializer builds its fields again for each instance.
_CURRENCY_CODES = {code: code for code in sorted(currency.alpha_3 for currency in pycountry.currencies)}


class CurrencyField(serializers.ChoiceField):
    """An ISO 4217 code, in any case: "inr" is "INR"."""

    def __init__(self, **kwargs):
        messages = {"invalid_choice": '"{input}" is not an ISO 4217 currency code.'}
        super().__init__(choices=_CURRENCY_CODES, error_messages=messages, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


class OrderCreateSerializer(StrictInputMixin, serializers.Serializer):
    order_number = serializers.CharField(
        max_length=64, required=False, validators=[code_validator], help_text="Generated when omitted."
    )
    total_amount = MoneyField()
    currency = CurrencyField(default="INR", help_text="ISO 4217 code.")
    shipping_address = serializers.CharField(required=False, allow_blank=True, default="")
    shipping_method = serializers.ChoiceField(choices=ShippingMethod.choices, default=ShippingMethod.STANDARD)
    status = serializers.ChoiceField(
        choices=[OrderStatus.PENDING],
        required=False,
        write_only=True,
        help_text="Orders always start pending; any other value is refused.",
        error_messages={"invalid_choice": "A new order is always pending; change its status afterwards."},
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        attrs.pop("status", None)
        return attrs


class OrderUpdateSerializer(StrictInputMixin, serializers.Serializer):
    """Staff edit; every field optional for PUT and PATCH alike."""

    status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
    tracking_number = serializers.CharField(max_length=64, required=False, validators=[code_validator])
    notes = serializers.CharField(required=False, allow_blank=True)
    shipping_address = serializers.CharField(required=False, allow_blank=True)
    shipping_method = serializers.ChoiceField(choices=ShippingMethod.choices, required=False)
    total_amount = MoneyField(required=False)
    currency = CurrencyField(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Send at least one field to change.")
        return attrs


class OrderStatusSerializer(StrictInputMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices)


class CustomerSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["id", "name", "email"]


class OrderEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = OrderEvent
        fields = ["id", "kind", "from_status", "to_status", "changes", "actor", "created_at"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    customer = CustomerSummarySerializer()
    next_statuses = serializers.SerializerMethodField(help_text="Statuses staff may move this order to.")

    class Meta:
        model = Order
        fields = [
            "id",
            "order_number",
            "customer",
            "total_amount",
            "currency",
            "shipping_address",
            "shipping_method",
            "status",
            "next_statuses",
            "tracking_number",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_next_statuses(self, order) -> list[str]:
        return [str(s) for s in order_status_next(order.status)]


class OrderDetailSerializer(OrderSerializer):
    history = OrderEventSerializer(source="events", many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = OrderSerializer.Meta.fields + ["history"]
        read_only_fields = fields
