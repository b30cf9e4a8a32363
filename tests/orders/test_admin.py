"""The admin writes through the services: history is recorded and the state machine holds."""

import pytest
from django.test import Client

from orders.models import NotificationPreference, Order, OrderEvent
from tests.factories import OrderFactory, StaffFactory


@pytest.fixture
def admin_client(db):
    client = Client()
    client.force_login(StaffFactory(is_superuser=True))
    return client


def _order_form(order, **changes):
    return {
        "status": order.status,
        "total_amount": str(order.total_amount),
        "currency": order.currency,
        "shipping_method": order.shipping_method,
        "shipping_address": order.shipping_address,
        "tracking_number": order.tracking_number,
        "notes": order.notes,
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        **changes,
    }


def test_admin_customer_add_creates_preferences(admin_client):
    r = admin_client.post(
        "/admin/orders/customer/add/",
        {"name": "Jo", "email": "jo@example.com", "phone": "+14155550123", "telegram_chat_id": "-100123"},
    )

    assert r.status_code == 302, r.content
    assert NotificationPreference.objects.filter(customer__email="jo@example.com").count() == 1


def test_admin_order_edit_records_history_and_follows_the_state_machine(admin_client):
    order = OrderFactory()
    url = f"/admin/orders/order/{order.pk}/change/"

    r = admin_client.post(url, _order_form(order, status="confirmed", notes="call first"))
    assert r.status_code == 302, r.content
    order.refresh_from_db()
    assert (order.status, order.notes) == ("confirmed", "call first")
    assert list(OrderEvent.objects.filter(order=order).values_list("kind", flat=True)) == [
        "created",
        "updated",
        "status_changed",
    ]

    r = admin_client.post(url, _order_form(order, status="pending"))
    assert r.status_code == 200  # the form again, with the error
    assert b"cannot become pending" in r.content
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert OrderEvent.objects.filter(order=order).count() == 3


def test_admin_pages_render(admin_client):
    order = OrderFactory()
    for url in [
        "/admin/",
        "/admin/orders/order/",
        f"/admin/orders/order/{order.pk}/change/",
        "/admin/orders/customer/",
        f"/admin/orders/customer/{order.customer.pk}/change/",
        "/admin/orders/notificationpreference/",
        "/admin/core/user/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    assert Order.objects.count() == 1
