import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.exceptions import ApplicationError, Conflict, Forbidden
from notify.services import notification_events, notifications_for_order_event
from orders.models import (
    Customer,
    NotificationPreference,
    Order,
    OrderEvent,
    OrderEventKind,
    order_status_next,
)
from orders.selectors import customer_audience, customer_owned_by, order_audience, order_history_known
from realtime import events
from realtime.services import events_record

CUSTOMER_FIELDS = {"name", "email", "phone", "telegram_chat_id", "address", "city", "country", "postal_code"}
# Where a customer's notifications go: only its verified owner or staff
# change these once it has an owner.
CUSTOMER_DESTINATION_FIELDS = {"email", "telegram_chat_id"}
PREFERENCE_FIELDS = {"email_enabled", "telegram_enabled", "in_app_enabled", "order_updates", "promotional"}
ORDER_UPDATE_FIELDS = {"tracking_number", "notes", "shipping_address", "shipping_method", "total_amount", "currency"}

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


def _random_code(length):
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


def _customer_check_unique_email(*, by, email, exclude_pk=None):
    """One record per email among those `by` created or owns. Other people's
    records are not looked at: the answer must not tell which addresses the
    hub knows."""
    if by is None:
        return
    mine = Customer.objects.filter(Q(created_by=by) | Q(owner=by), email__iexact=email).exclude(pk=exclude_pk)
    if mine.exists():
        raise ValidationError({"email": ["You already have a customer with this email."]})


def _customer_check_may_redirect(*, customer, by, fields):
    """Only the owner, once verified, or staff may change where an owned
    record's notifications go; its creator may while no one owns it."""
    changing = {name for name in CUSTOMER_DESTINATION_FIELDS & set(fields) if getattr(customer, name) != fields[name]}
    if not changing or by.is_staff:
        return
    if customer.owner_id is None and customer.created_by_id == by.pk:
        return
    if customer.owner_id == by.pk and not by.email_verified:
        raise Forbidden(
            "Verify your email before you change where this customer's notifications go.",
            code="email_not_verified",
        )
    if customer.owner_id != by.pk:
        raise Forbidden("Only this customer's owner or staff may change where its notifications go.")


def _order_check_unique(*, exclude_pk=None, **fields):
    """fields: order_number= and/or tracking_number=."""
    errors = {}
    for name, value in fields.items():
        if value and Order.objects.filter(**{name: value}).exclude(pk=exclude_pk).exists():
            errors[name] = [f"An order with this {name.replace('_', ' ')} already exists."]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def customer_create(*, by, name, email, owner=None, **fields):
    unknown = set(fields) - CUSTOMER_FIELDS
    if unknown:
        raise TypeError(f"unknown customer fields: {sorted(unknown)}")
    _customer_check_unique_email(by=by, email=email)
    customer = Customer(name=name, email=email, created_by=by, owner=owner, **fields)
    customer.full_clean(validate_unique=False, validate_constraints=False)
    customer.save()
    NotificationPreference.objects.create(customer=customer)
    return customer


@transaction.atomic
def customer_update(*, customer, by, **fields):
    unknown = set(fields) - CUSTOMER_FIELDS
    if unknown:
        raise TypeError(f"unknown customer fields: {sorted(unknown)}")
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    _customer_check_may_redirect(customer=customer, by=by, fields=fields)
    if "email" in fields:
        _customer_check_unique_email(by=by, email=fields["email"], exclude_pk=customer.pk)
    changed = {name for name, value in fields.items() if getattr(customer, name) != value}
    for name, value in fields.items():
        setattr(customer, name, value)
    customer.full_clean(validate_unique=False, validate_constraints=False)
    customer.save()
    if changed:
        events_record([events.customer_updated(customer, changed, audience=customer_audience(customer))])
    return customer


@transaction.atomic
def customer_delete(*, customer, by):
    if customer.orders.exists():
        raise Conflict(
            "This customer has orders; delete or keep them first.",
            code="customer_has_orders",
        )
    customer.delete()


@transaction.atomic
def preferences_update(*, customer, by, **fields):
    unknown = set(fields) - PREFERENCE_FIELDS
    if unknown:
        raise TypeError(f"unknown preference fields: {sorted(unknown)}")
    # A customer made outside the services (e.g. raw admin import) may have no row yet.
    preferences, _ = NotificationPreference.objects.select_for_update().get_or_create(customer=customer)
    for name, value in fields.items():
        setattr(preferences, name, value)
    preferences.save()
    return preferences


def _customer_for_user(user):
    """The customer record linked to `user`. The first time, the one `user`
    made with their own email, else a new one with their name and email;
    never a record someone else made."""
    customer = customer_owned_by(user)
    if customer is not None:
        return customer
    if not user.email:
        raise ApplicationError(
            "Your account has no email address, so no customer record can be made for it.",
            code="no_customer_email",
        )
    # Serialises a user's first orders, so they link one record, not two. NO KEY:
    # the foreign keys to the user that every order and event insert checks
    # (FOR KEY SHARE) must not wait for it, or they deadlock with it.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
    customer = customer_owned_by(user)
    if customer is not None:
        return customer
    made = Customer.objects.filter(created_by=user, owner__isnull=True, email__iexact=user.email).first()
    if made is not None:
        return _customer_link(made, user)
    return customer_create(by=user, owner=user, name=user.get_full_name() or user.get_username(), email=user.email)


@transaction.atomic
def customer_claim(*, user):
    """After `user` verified their email: link the oldest record carrying it
    that no verified account owns, if `user` has none linked yet. Its creator
    loses sight of it. Returns the record claimed, or None."""
    if not user.email_verified or customer_owned_by(user) is not None:
        return None
    claimable = (
        Customer.objects.select_for_update(of=("self",))
        .filter(email__iexact=user.email)
        .filter(Q(owner__isnull=True) | Q(owner__email_verified_at__isnull=True))
        .order_by("created_at", "id")
        .first()
    )
    return None if claimable is None else _customer_link(claimable, user)


def _customer_link(customer, user):
    """Make `user` the owner of `customer` (locked by the caller's transaction, or just found)."""
    customer.owner = user
    customer.save(update_fields=["owner", "updated_at"])
    return customer


def _new_order_number():
    return f"ORD-{timezone.now():%Y%m%d}-{_random_code(6)}"


def _new_tracking_number():
    return f"TRK{_random_code(12)}"


def order_create(*, by, order_number=None, **fields):
    """Place an order (`_order_place`'s fields) for the customer record linked
    to `by`; it starts `pending`.

    A taken number is found by the unique constraints, not by a query before
    every insert; which one it was is asked once the failed transaction (or
    savepoint) has rolled back.
    """
    numbers = {"order_number": order_number or _new_order_number(), "tracking_number": _new_tracking_number()}
    try:
        return _order_place(by=by, **numbers, **fields)
    except IntegrityError:
        _order_check_unique(**numbers)
        raise


@transaction.atomic
def _order_place(
    *,
    by,
    order_number,
    tracking_number,
    total_amount,
    currency="INR",
    shipping_address="",
    shipping_method="standard",
    notes="",
):
    customer = _customer_for_user(by)
    order = Order(
        order_number=order_number,
        tracking_number=tracking_number,
        customer=customer,
        created_by=by,
        total_amount=total_amount,
        currency=currency,
        shipping_address=shipping_address,
        shipping_method=shipping_method,
        notes=notes,
    )
    order.full_clean(exclude=["customer", "created_by"], validate_unique=False, validate_constraints=False)
    order.save()
    event = OrderEvent.objects.create(order=order, kind=OrderEventKind.CREATED, to_status=order.status, actor=by)
    rows = notifications_for_order_event(order_event=event)
    events_record([events.order_created(order, audience=order_audience(order)), *notification_events(rows)])
    order_history_known(order, [event])
    return order


def _json_value(value):
    return str(value) if isinstance(value, Decimal) else value


@transaction.atomic
def order_update(*, order, by, status=None, **fields):
    """Staff edit of an order's fields; a new status goes through order_change_status."""
    unknown = set(fields) - ORDER_UPDATE_FIELDS
    if unknown:
        raise TypeError(f"unknown order fields: {sorted(unknown)}")
    order = Order.objects.select_for_update().get(pk=order.pk)
    if "tracking_number" in fields:
        _order_check_unique(tracking_number=fields["tracking_number"], exclude_pk=order.pk)
    changes = {}
    for name, value in fields.items():
        old = getattr(order, name)
        if old != value:
            changes[name] = [_json_value(old), _json_value(value)]
            setattr(order, name, value)
    if changes:
        order.full_clean(exclude=["customer", "created_by"], validate_unique=False, validate_constraints=False)
        order.save()
        OrderEvent.objects.create(order=order, kind=OrderEventKind.UPDATED, changes=changes, actor=by)
    if status is not None and status != order.status:
        order = order_change_status(order=order, status=status, by=by)
    if changes:
        events_record([events.order_updated(order, changes, audience=order_audience(order))])
    return order


@transaction.atomic
def order_change_status(*, order, status, by):
    """Move an order to `status` if the state machine allows it; the one path for status changes.

    Setting the status it already has changes nothing and records nothing.
    """
    # The row lock makes check-then-save atomic against a concurrent change.
    order = Order.objects.select_for_update().get(pk=order.pk)
    if status == order.status:
        return order
    allowed = order_status_next(order.status)
    if status not in allowed:
        raise Conflict(
            f"An order that is {order.status} cannot become {status}; "
            + (f"allowed next: {', '.join(allowed)}." if allowed else "it is final."),
            code="invalid_transition",
            extra={"current": order.status, "requested": status, "allowed": list(allowed)},
        )
    previous = order.status
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    event = OrderEvent.objects.create(
        order=order, kind=OrderEventKind.STATUS_CHANGED, from_status=previous, to_status=status, actor=by
    )
    rows = notifications_for_order_event(order_event=event)
    specs = [events.order_status_changed(order, previous, audience=order_audience(order)), *notification_events(rows)]
    events_record(specs)
    return order


@transaction.atomic
def order_delete(*, order, by):
    # Through the queryset, so the instance keeps its pk for the event; who
    # could see the order is worked out from the instance and its customer.
    Order.objects.filter(pk=order.pk).delete()
    events_record([events.order_deleted(order, audience=order_audience(order))])
