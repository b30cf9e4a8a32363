import re
from decimal import Decimal

import pycountry
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

E164_PHONE = re.compile(r"^\+[1-9]\d{1,14}$")
# Telegram chat ids fit in 52 bits; groups and channels are negative.
TELEGRAM_CHAT_ID_LIMIT = 2**52

phone_validator = RegexValidator(
    E164_PHONE, "Enter the phone number in E.164 format: + then country code and number, e.g. +14155550123."
)
code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


def validate_currency(value):
    if pycountry.currencies.get(alpha_3=value) is None:
        raise ValidationError(f"{value!r} is not an ISO 4217 currency code.", code="invalid_currency")


def validate_telegram_chat_id(value):
    if value == 0 or not -TELEGRAM_CHAT_ID_LIMIT < value < TELEGRAM_CHAT_ID_LIMIT:
        raise ValidationError("Enter a Telegram chat id: a non-zero integer, negative for groups.")


class Customer(models.Model):
    """A person orders are placed for and notifications go to.

    It belongs to the account linked as its `owner` (set by the hub: the
    record an account's first order makes, or one the account claims by
    verifying the record's email) and, until it has an owner, to the account
    that created it. A matching email alone grants nothing.
    """

    name = models.CharField(max_length=200)
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=16, blank=True, validators=[phone_validator])
    telegram_chat_id = models.BigIntegerField(null=True, blank=True, validators=[validate_telegram_chat_id])
    address = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers_created"
    )
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="customer"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(Lower("email"), name="orders_customer_email_ci")]

    def __str__(self):
        return f"{self.name} <{self.email}>"


class NotificationPreference(models.Model):
    """Which notifications a customer wants; created with the customer."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="preferences")
    email_enabled = models.BooleanField(default=True)
    telegram_enabled = models.BooleanField(default=True)
    # Messages in the hub's inbox of the account linked to the customer.
    in_app_enabled = models.BooleanField(default=True)
    order_updates = models.BooleanField(default=True)
    promotional = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Preferences of {self.customer}"


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


# An order moves forward along this line, possibly skipping steps (a confirmed
# order may ship at once); it can be cancelled until it has shipped.
ORDER_STATUS_FLOW = [
    OrderStatus.PENDING,
    OrderStatus.CONFIRMED,
    OrderStatus.PROCESSING,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
]
CANCELLABLE_STATUSES = {OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.PROCESSING}


def order_status_next(status):
    """The statuses an order in `status` may move to, in flow order."""
    if status not in ORDER_STATUS_FLOW:
        return []
    later = ORDER_STATUS_FLOW[ORDER_STATUS_FLOW.index(status) + 1 :]
    return later + ([OrderStatus.CANCELLED] if status in CANCELLABLE_STATUSES else [])


class ShippingMethod(models.TextChoices):
    STANDARD = "standard"
    EXPRESS = "express"
    OVERNIGHT = "overnight"
    PICKUP = "pickup"


class Order(models.Model):
    order_number = models.CharField(max_length=64, unique=True, validators=[code_validator])
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders_created"
    )
    total_amount = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))])
    currency = models.CharField(max_length=3, default="INR", validators=[validate_currency])
    shipping_address = models.TextField(blank=True)
    shipping_method = models.CharField(max_length=20, choices=ShippingMethod.choices, default=ShippingMethod.STANDARD)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    tracking_number = models.CharField(max_length=64, unique=True, validators=[code_validator])
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(total_amount__gt=0), name="orders_order_total_positive"),
            models.CheckConstraint(condition=models.Q(status__in=OrderStatus.values), name="orders_order_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return self.order_number


class OrderEventKind(models.TextChoices):
    CREATED = "created"
    UPDATED = "updated"
    STATUS_CHANGED = "status_changed"


class OrderEvent(models.Model):
    """One row of an order's history, written by the service that made the change."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=OrderEventKind.choices)
    from_status = models.CharField(max_length=20, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=OrderStatus.choices, blank=True)
    # {field: [old, new]} for updates; empty otherwise.
    changes = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.order} {self.kind}"
