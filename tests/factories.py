from decimal import Decimal

import factory

from core.models import User
from orders import services as order_services
from orders.models import Customer, Order

PASSWORD = "correct-horse-battery-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Tester{n}")
    password = factory.django.Password(PASSWORD)


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class CustomerFactory(factory.django.DjangoModelFactory):
    """Made through the service, so the preferences row comes with it."""

    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = "+14155550123"
    telegram_chat_id = 123456789
    created_by = factory.SubFactory(UserFactory)

    @classmethod
    def _create(cls, model_class, *args, created_by, **kwargs):
        return order_services.customer_create(by=created_by, **kwargs)


class OrderFactory(factory.django.DjangoModelFactory):
    """Placed through the service by `created_by`, for the customer with that user's email."""

    class Meta:
        model = Order

    created_by = factory.SubFactory(UserFactory)
    total_amount = Decimal("149.99")

    @classmethod
    def _create(cls, model_class, *args, created_by, **kwargs):
        return order_services.order_create(by=created_by, **kwargs)
