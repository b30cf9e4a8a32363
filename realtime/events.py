"""One builder per event type. Each returns what happened (`type`, `data`)
and who besides staff may see it (`audience`, user ids), which the caller
knows: this app knows no domain rules. A `private` event (a user's inbox)
goes to its audience alone, staff included only if they are in it.

The envelope on the wire is {"id", "type", "ts", "data"}; docs/realtime.md
shows every type.
"""

from typing import NamedTuple


class EventSpec(NamedTuple):
    type: str
    data: dict
    audience: frozenset  # ids of the users, staff aside, who may see it
    private: bool = False  # only the audience sees it: staff as such do not


ORDER_CREATED = "order.created"
ORDER_UPDATED = "order.updated"
ORDER_STATUS_CHANGED = "order.status_changed"
ORDER_DELETED = "order.deleted"
CUSTOMER_UPDATED = "customer.updated"
NOTIFICATION_CREATED = "notification.created"
NOTIFICATION_STATUS_CHANGED = "notification.status_changed"
INBOX_MESSAGE_CREATED = "inbox.message_created"
INBOX_MESSAGE_CHANGED = "inbox.message_changed"
INBOX_COUNTS_CHANGED = "inbox.counts_changed"
EVENT_TYPES = [
    ORDER_CREATED,
    ORDER_UPDATED,
    ORDER_STATUS_CHANGED,
    ORDER_DELETED,
    CUSTOMER_UPDATED,
    NOTIFICATION_CREATED,
    NOTIFICATION_STATUS_CHANGED,
    INBOX_MESSAGE_CREATED,
    INBOX_MESSAGE_CHANGED,
    INBOX_COUNTS_CHANGED,
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


def order_created(order, *, audience):
    return EventSpec(ORDER_CREATED, _order(order), frozenset(audience))


def order_updated(order, changes, *, audience):
    """`changes`: {field: [old, new]}, JSON values."""
    return EventSpec(ORDER_UPDATED, {**_order(order), "changes": changes}, frozenset(audience))


def order_status_changed(order, old_status, *, audience):
    data = {**_order(order), "old_status": old_status, "new_status": order.status}
    return EventSpec(ORDER_STATUS_CHANGED, data, frozenset(audience))


def order_deleted(order, *, audience):
    data = {"order_id": order.pk, "order_number": order.order_number}
    return EventSpec(ORDER_DELETED, data, frozenset(audience))


def customer_updated(customer, changed, *, audience):
    """`changed`: the names of the fields that changed."""
    data = {
        "customer_id": customer.pk,
        "name": customer.name,
        "email": customer.email,
        "changed": sorted(changed),
    }
    return EventSpec(CUSTOMER_UPDATED, data, frozenset(audience))


def notification_created(notification, *, audience):
    return EventSpec(NOTIFICATION_CREATED, _notification(notification), frozenset(audience))


def notification_status_changed(notification, old_status, *, audience):
    data = {**_notification(notification), "old_status": old_status}
    return EventSpec(NOTIFICATION_STATUS_CHANGED, data, frozenset(audience))


# An inbox's events go to its owner's sockets only. `message`: the message
# as the REST API shows it (the caller serialises it).


def inbox_message_created(message, *, owner_id):
    return EventSpec(INBOX_MESSAGE_CREATED, message, frozenset({owner_id}), private=True)


def inbox_message_changed(message, *, owner_id):
    return EventSpec(INBOX_MESSAGE_CHANGED, message, frozenset({owner_id}), private=True)


def inbox_counts_changed(counts, *, owner_id, marked_all=None):
    """`counts`: {"unseen": n, "unread": n}, after the change. `marked_all`:
    for a change to many messages at once, {"state": "seen" or "read",
    "up_to": the highest id it covered or None for all, "at": ISO time}."""
    return EventSpec(INBOX_COUNTS_CHANGED, {**counts, "marked_all": marked_all}, frozenset({owner_id}), private=True)
