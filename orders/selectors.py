"""Reads, and who may see what: staff everything; a user the customers they
own, and those they created that no one owns yet; the orders of those
customers and the orders they placed. Anything else does not exist for them
(404). An email, verified or not, widens nothing by itself."""

from django.db.models import Prefetch, Q

from orders.models import Customer, NotificationPreference, Order, OrderEvent


def _customers_of(user, prefix=""):
    """The customers `user` may see, as a filter (on `prefix`, e.g. "customer__")."""
    return Q(**{f"{prefix}owner": user}) | Q(**{f"{prefix}created_by": user, f"{prefix}owner__isnull": True})


def customer_list(*, user):
    customers = Customer.objects.all()
    if user.is_staff:
        return customers
    return customers.filter(_customers_of(user))


def order_list(*, user):
    orders = Order.objects.select_related("customer")
    if user.is_staff:
        return orders
    return orders.filter(Q(created_by=user) | _customers_of(user, prefix="customer__"))


def customer_viewer_ids(customers):
    """The other side of customer_list: {customer pk: ids of the users, staff
    aside, who may see it}: its owner, or else its creator."""
    return {c.pk: {c.created_by_id if c.owner_id is None else c.owner_id} - {None} for c in customers}


def order_audience(order):
    """Who, staff aside, may see `order` (its customer loaded): the ids of order_viewer_ids."""
    return order_viewer_ids([order])[order.pk]


def customer_audience(customer):
    return customer_viewer_ids([customer])[customer.pk]


def customer_owned_by(user):
    """The customer record linked to `user` (its preferences loaded), or None."""
    return Customer.objects.select_related("preferences").filter(owner=user).first()


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


def order_history_known(order, history):
    """Give `order` its history rows without a query, as order_with_history
    would load them: for an order just written, whose rows are in hand."""
    order._prefetched_objects_cache = {"events": list(history)}
    return order


def preferences_get(*, customer):
    """The customer's preferences; the defaults if no row was ever written."""
    try:
        return customer.preferences
    except NotificationPreference.DoesNotExist:
        return NotificationPreference(customer=customer)
