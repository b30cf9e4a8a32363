"""The seed's curl flow (sections 1-4, 6, 7) over real HTTP against a Daphne process."""

import httpx
import pytest

from tests.e2e.conftest import wait_until
from tests.helpers import SEED_BULK, SEED_CUSTOMER, SEED_ORDER, SEED_PREFERENCES, SEED_SEND, SEED_SHIP, SEED_USER

pytestmark = pytest.mark.e2e


def _auth(token):
    return {"Authorization": f"Token {token}"}


def test_seed_flow_answers_as_the_seed_describes(hub, settings):
    api = httpx.Client(base_url=f"{hub.url}/api/v1", timeout=10)

    # 1. health
    r = api.get("/health/")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}  # the details are for staff

    # 2. authentication
    r = api.post("/auth/register/", json=SEED_USER)
    assert r.status_code == 201, r.text
    assert "password" not in r.json()
    assert r.json()["is_admin"] is False

    r = api.post("/auth/token/", json={"username": "demo_user", "password": "secure_password123"})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"token", "expires_at"}
    user = _auth(r.json()["token"])

    r = api.post("/auth/token/", json={"username": "krushnappan", "password": "admin_password"})
    assert r.status_code == 200, r.text
    admin = _auth(r.json()["token"])

    r = api.get("/auth/token/check/", headers=user)
    assert r.status_code == 200
    assert r.json()["user"]["username"] == "demo_user"
    assert r.json()["is_admin"] is False
    assert api.get("/auth/token/check/", headers=admin).json()["is_admin"] is True

    # 3. customers
    r = api.post("/customers/", headers=user, json=SEED_CUSTOMER)
    assert r.status_code == 201, r.text
    customer_id = r.json()["id"]
    assert r.json()["telegram_chat_id"] == 123456789

    r = api.get("/customers/", headers=user)
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["results"]] == [customer_id]
    assert api.get(f"/customers/{customer_id}/", headers=user).json()["name"] == "John Doe"

    r = api.patch(f"/customers/{customer_id}/", headers=user, json={"phone": "+1987654321"})
    assert r.status_code == 200
    assert r.json()["phone"] == "+1987654321"

    # 4. orders
    r = api.post("/orders/", headers=user, json=SEED_ORDER)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["customer"]["email"] == "demo@example.com"
    assert order["status"] == "pending"
    assert order["tracking_number"].startswith("TRK")
    order_url = f"/orders/{order['id']}/"

    assert api.put(f"{order_url}status/", headers=user, json={"status": "confirmed"}).status_code == 403
    r = api.put(f"{order_url}status/", headers=admin, json={"status": "confirmed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed"

    r = api.put(order_url, headers=admin, json=SEED_SHIP)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["tracking_number"]) == ("shipped", "TRK123456789")

    r = api.patch(order_url, headers=admin, json={"status": "delivered"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "delivered"

    r = api.get("/orders/", headers=user)
    assert r.status_code == 200
    assert [o["order_number"] for o in r.json()["results"]] == ["ORD-001"]

    r = api.get(order_url, headers=user)
    assert r.status_code == 200
    assert [(e["kind"], e["to_status"]) for e in r.json()["history"]] == [
        ("created", "pending"),
        ("status_changed", "confirmed"),
        ("updated", ""),
        ("status_changed", "shipped"),
        ("status_changed", "delivered"),
    ]

    assert api.delete(order_url, headers=user).status_code == 403
    assert api.delete(order_url, headers=admin).status_code == 204
    assert api.get(order_url, headers=admin).status_code == 404

    # 5. notifications
    r = api.post("/notifications/send/", headers=user, json=SEED_SEND)
    assert r.status_code == 202, r.text
    single_url = f"/notifications/{r.json()['id']}/"
    r = api.post("/notifications/bulk/", headers=user, json=SEED_BULK)
    assert r.status_code == 202, r.text
    assert r.json()["count"] == 2
    r = api.get("/notifications/", headers=user)
    assert r.status_code == 200
    # the three sent by hand, and the order's email (its Telegram was skipped: no chat id on file)
    assert r.json()["count"] >= 3
    sent = wait_until(lambda: api.get(single_url, headers=user).json()["status"] == "sent", what="the email sent")
    assert sent
    detail = api.get(single_url, headers=user).json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["sent"]
    r = api.get("/notifications/stats/", headers=user)
    assert r.status_code == 200
    assert r.json()["overall"]["by_status"]["sent"] >= 1

    # 6. preferences
    r = api.get(f"/customers/{customer_id}/preferences/", headers=user)
    assert r.status_code == 200
    assert r.json()["email_enabled"] is True
    r = api.patch(f"/customers/{customer_id}/preferences/", headers=user, json=SEED_PREFERENCES)
    assert r.status_code == 200
    assert r.json()["telegram_enabled"] is False

    # 7. monitoring
    r = api.get("/health/", headers=user)
    assert (r.status_code, r.json()) == (200, {"status": "ok"}), r.text
    r = api.get("/health/", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["components"]["worker"] == {"ok": True}
    for check in ("/health/worker/", "/health/celery/"):
        r = httpx.get(f"{hub.url}{check}", headers=user)
        assert (r.status_code, r.json()) == (200, {"status": "ok"}), r.text
        r = httpx.get(f"{hub.url}{check}", headers=admin)
        assert r.json()["status"] == "ok" and r.json()["workers"]
    r = httpx.get(f"{hub.url}/health/redis/", headers=user)
    assert r.status_code == 200
    assert r.json()["status"] == ("ok" if hub.env.get("REDIS_URL") else "not_configured")

    # sign out: the token stops working
    assert api.post("/auth/logout/", headers=user).status_code == 204
    assert api.get("/auth/token/check/", headers=user).status_code == 401


def test_api_docs_are_served(hub):
    r = httpx.get(f"{hub.url}/api/schema.json", timeout=10)
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/api/v1/auth/token/", "/api/v1/orders/{id}/status/", "/api/v1/customers/{id}/preferences/"} <= set(paths)
    for page in ("/api/docs/", "/api/redoc/"):
        r = httpx.get(f"{hub.url}{page}", timeout=10)
        assert r.status_code == 200
        assert "text/html" in r.headers["content-type"]
    # The UI's own script, served by the same process.
    r = httpx.get(f"{hub.url}/static/drf-yasg/swagger-ui-dist/swagger-ui-bundle.js", timeout=10)
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
