"""Reads, and who may see what: staff everything; a user the customers they
created or that carry their email, and the orders of those customers or that
they placed. Anything else does not exist for them (404)."""

from django.db.models import Prefetch, Q

from orders.models import Customer, NotificationPreference, Order, OrderEvent


def customer_list(*, user):
    customers = Customer.objects.all()
    if user.is_staff:
        return customers
    mine = Q(created_by=user)
    if user.email:
        mine |= Q(email__iexact=user.email)
    return customers.filter(mine)


def order_list(*, user):
    orders = Order.objects.select_related("customer")
    if user.is_staff:
        return orders
    return orders.filter(Q(created_by=user) | Q(customer__in=customer_list(user=user)))


def order_with_history(queryset):
    return queryset.prefetch_related(
        Prefetch("events", queryset=OrderEvent.objects.select_related("actor").order_by("created_at", "id"))
    )


def preferences_get(*, customer):
    """The customer's preferences; the defaults if no row was ever written."""
    try:
        return customer.preferences
    except NotificationPreference.DoesNotExist:
        return NotificationPreference(customer=customer)
