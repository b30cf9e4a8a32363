"""One builder per event type. Each returns what happened (`type`, `data`)
and what it concerns (`subject`), from which the log works out who may see it.

The envelope on the wire is {"id", "type", "ts", "data"}; docs/realtime.md
shows every type.
"""

from typing import NamedTuple

from django.db import models


class EventSpec(NamedTuple):
    type: str
    data: dict
    subject: models.Model  # an Order, Customer or Notification


ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"
ORDER_STATUS_CHANGED = "order.status_changed"
ORDER_DELETED = "order.deleted"
CUSTOMER_UPDATED = "customer.updated"
NOTIFICATION_CREATED = "notification.created"
NOTIFICATION_STATUS_CHANGED = "notification.status_changed"
EVENT_TYPES = [
    ORDER_CREATED,
    ORDER_UPDATED,
    ORDER_STATUS_CHANGED,
    ORDER_DELETED,
    CUSTOMER_UPDATED,
    NOTIFICATION_CREATED,
    NOTIFICATION_STATUS_CHANGED,
]


def _iso(value):
    return value.isoformat() if value else None


def _order(order):
    return {
        "order_id": order.pk,
        "order_number": order.order_number,
        "customer_id": order.customer_id,
        "customer_name": order.customer.name,
        "status": order.status,
        "total_amount": str(order.total_amount),
        "currency": order.currency,
        "tracking_number": order.tracking_number,
        "updated_at": _iso(order.updated_at),
    }


def _notification(notification):
    return {
        "notification_id": notification.pk,
        "order_id": notification.order_id,
        "customer_id": notification.customer_id,
        "channel": notification.channel,
        "recipient": notification.recipient,
        "title": notification.title,
        "priority": notification.priority,
        "status": notification.status,
        "attempts": notification.attempts,
        "last_error": notification.last_error,
        "created_at": _iso(notification.created_at),
        "sent_at": _iso(notification.sent_at),
    }


def order_created(order):
    return EventSpec(ORDER_CREATED, _order(order), order)


def order_updated(order, changes):
    """`changes`: {field: [old, new]}, JSON values."""
    return EventSpec(ORDER_UPDATED, {**_order(order), "changes": changes}, order)


def order_status_changed(order, old_status):
    return EventSpec(
        ORDER_STATUS_CHANGED, {**_order(order), "old_status": old_status, "new_status": order.status}, order
    )


def order_deleted(order):
    return EventSpec(ORDER_DELETED, {"order_id": order.pk, "order_number": order.order_number}, order)


def customer_updated(customer, changed):
    """`changed`: the names of the fields that changed."""
    data = {
        "customer_id": customer.pk,
        "name": customer.name,
        "email": customer.email,
        "changed": sorted(changed),
    }
    return EventSpec(CUSTOMER_UPDATED, data, customer)


def notification_created(notification):
    return EventSpec(NOTIFICATION_CREATED, _notification(notification), notification)


def notification_status_changed(notification, old_status):
    data = {**_notification(notification), "old_status": old_status}
    return EventSpec(NOTIFICATION_STATUS_CHANGED, data, notification)
