"""What the database is asked on the hot paths, statement by statement (BEGIN
and COMMIT aside), outside any test transaction, as a request runs."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import client_for
from tests.factories import OrderFactory, UserFactory
from tests.helpers import SEED_ORDER

# Commits wake the relay as in the server (it runs elsewhere): no relay round
# in the request's thread.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.own_relay]


def _statements(queries):
    """("SELECT", "table") for each statement; the relay's wake-up by its function."""
    found = []
    for query in queries:
        sql = query["sql"]
        if sql.startswith(("BEGIN", "COMMIT", "RELEASE", "SAVEPOINT")):
            continue
        if "pg_notify" in sql:
            found.append(("SELECT", "pg_notify"))
            continue
        verb = sql.split()[0]
        table = re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', sql).group(1)
        found.append((verb, table))
    return found


def test_an_order_create_runs_these_seven_statements_and_wakes_the_relay():
    user = UserFactory()
    client = client_for(user)
    assert client.post("/api/v1/orders/", {**SEED_ORDER, "order_number": "ORD-WARM"}).status_code == 201

    with CaptureQueriesContext(connection) as queries:
        r = client.post("/api/v1/orders/", SEED_ORDER)

    assert r.status_code == 201, r.content
    # On SQLite the relay is a thread of this process, woken without a statement.
    wake = [("SELECT", "pg_notify")] if connection.vendor == "postgresql" else []
    assert _statements(queries) == [
        ("SELECT", "knox_authtoken"),  # the token and its user, once
        ("SELECT", "orders_customer"),  # the caller's record, its preferences joined
        ("INSERT", "orders_order"),
        ("INSERT", "orders_orderevent"),
        ("INSERT", "notify_notification"),  # email and Telegram in one insert
        ("INSERT", "realtime_pendingevent"),  # the order's event and the notifications' together
        ("UPDATE", "notify_notification"),  # after commit: queued, then the broker message
        *wake,  # after commit too
    ]
    # The answer is built from what was written, history included.
    assert [row["kind"] for row in r.json()["history"]] == ["created"]


@pytest.mark.parametrize("orders", [3, 20])
def test_a_page_of_orders_runs_three_statements_whatever_its_size(orders):
    user = UserFactory()
    for _ in range(orders):
        OrderFactory(created_by=user)
    client = client_for(user)

    with CaptureQueriesContext(connection) as queries:
        r = client.get("/api/v1/orders/", {"page_size": 20})

    assert len(r.json()["results"]) == orders
    assert _statements(queries) == [
        ("SELECT", "knox_authtoken"),
        ("SELECT", "orders_order"),
        ("SELECT", "orders_order"),
    ]
