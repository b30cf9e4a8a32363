"""Reads, and who may see what: staff everything; a user the customers they
created or that carry their email, and the orders of those customers or that
they placed. Anything else does not exist for them (404)."""

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q
from django.db.models.functions import Lower

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


def customer_viewer_ids(customers):
    """The other side of customer_list: {customer pk: ids of the users, staff
    aside, who may see it}."""
    viewers = {customer.pk: {customer.created_by_id} - {None} for customer in customers}
    by_email = {}
    for customer in customers:
        by_email.setdefault(customer.email.lower(), []).append(customer.pk)
    if by_email:
        users = get_user_model().objects.annotate(email_lower=Lower("email")).filter(email_lower__in=by_email)
        for user_pk, email in users.values_list("pk", "email_lower"):
            for customer_pk in by_email[email]:
                viewers[customer_pk].add(user_pk)
    return viewers


def order_viewer_ids(orders, by_customer=None):
    """The other side of order_list: {order pk: ids of the users, staff aside,
    who may see it}. `by_customer`: customer_viewer_ids of the orders'
    customers, if the caller has it already."""
    if by_customer is None:
        by_customer = customer_viewer_ids({order.customer for order in orders})
    return {order.pk: ({order.created_by_id} - {None}) | by_customer[order.customer_id] for order in orders}


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
