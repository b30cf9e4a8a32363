"""The ownership scenarios against a running hub (embedded or services, as the
environment gives), over HTTP and the socket, as an attacker would play them."""

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from notify.models import Notification, NotificationKind
from tests.e2e.conftest import wait_until
from tests.helpers import SEED_USER, verification_code

pytestmark = pytest.mark.e2e

ORDER = {"total_amount": "149.99", "shipping_address": "1 Secret Lane", "notes": "leave at the back door"}


class Account:
    """A registered account speaking to the hub over HTTP."""

    def __init__(self, url, username, email):
        self.url = url
        r = httpx.post(f"{url}/api/v1/auth/register/", json={**SEED_USER, "username": username, "email": email})
        assert r.status_code == 201, r.text
        self.email = email
        token = httpx.post(
            f"{url}/api/v1/auth/token/", json={"username": username, "password": SEED_USER["password"]}
        ).json()["token"]
        self.token = token
        self.api = httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Token {token}"}, timeout=10)

    def code(self):
        mail = Notification.objects.filter(kind=NotificationKind.EMAIL_VERIFICATION, recipient=self.email).latest("id")
        return verification_code(mail.message)

    def verify(self):
        r = httpx.post(f"{self.url}/api/v1/auth/verify/", json={"code": self.code()})
        assert r.status_code == 200, r.text

    def order(self):
        r = self.api.post("/orders/", json=ORDER)
        assert r.status_code == 201, r.text
        return r.json()

    def customer(self, email, **fields):
        r = self.api.post("/customers/", json={"name": "Someone", "email": email, **fields})
        assert r.status_code == 201, r.text
        return r.json()

    def ids(self, path):
        r = self.api.get(path)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["results"]]

    def socket(self):
        ws = connect(
            self.url.replace("http://", "ws://", 1) + "/ws/events/?last_event_id=0",
            additional_headers={"Authorization": f"Token {self.token}"},
            proxy=None,
            open_timeout=10,
        )
        ws.ping().wait(5)
        return ws


def _events(ws, quiet=1.5):
    """Every event the socket got until it was quiet for `quiet` seconds."""
    got = []
    while True:
        try:
            message = json.loads(ws.recv(timeout=quiet))
        except TimeoutError:
            return got
        if message.get("type") != "heartbeat":
            got.append(message)


def test_pre_squat_and_register_as_someone_reach_nothing(hub):
    attacker = Account(hub.url, "attacker", "attacker@example.com")
    squat = attacker.customer("victim@example.com", telegram_chat_id=666)
    watching = attacker.socket()
    _events(watching, quiet=0.5)  # the attacker's own history

    victim = Account(hub.url, "victim", "victim@example.com")
    order = victim.order()
    theirs = victim.customer("friend@example.com")
    impostor = Account(hub.url, "impostor", "friend@example.com")  # the friend's address, not theirs

    assert order["customer"]["id"] != squat["id"]
    assert attacker.api.get(f"/orders/{order['id']}/").status_code == 404
    assert attacker.ids("/orders/") == [] and attacker.ids("/notifications/") == []
    assert _events(watching) == []
    watching.close()
    assert impostor.api.get(f"/customers/{theirs['id']}/").status_code == 404
    assert impostor.api.patch(f"/customers/{theirs['id']}/", json={"telegram_chat_id": 1}).status_code == 404
    assert impostor.ids("/customers/") == []
    # Enumeration: neither a record nor an account with a known address says it is known.
    assert impostor.customer("victim@example.com")["id"] != squat["id"]
    Account(hub.url, "another", "victim@example.com")


def test_a_verified_claim_moves_the_record_and_its_live_feed_to_its_owner(hub):
    creator = Account(hub.url, "creator", "creator@example.com")
    made = creator.customer("ann@example.com", telegram_chat_id=123)
    ann = Account(hub.url, "ann", "ann@example.com")
    assert ann.ids("/customers/") == []

    ann.verify()
    creator_feed, ann_feed = creator.socket(), ann.socket()
    _events(creator_feed, quiet=0.5), _events(ann_feed, quiet=0.5)
    order = ann.order()

    assert order["customer"]["id"] == made["id"]
    assert ann.ids("/customers/") == [made["id"]]
    assert creator.api.get(f"/customers/{made['id']}/").status_code == 404
    assert creator.api.get(f"/orders/{order['id']}/").status_code == 404
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline and not any(e["type"] == "order.created" for e in seen):
        seen += _events(ann_feed, quiet=1.0)
    assert [e["data"]["order_id"] for e in seen if e["type"] == "order.created"] == [order["id"]]
    assert _events(creator_feed) == []
    for ws in (creator_feed, ann_feed):
        ws.close()
    # Mail, Telegram and the inbox of Ann, who owns the record now.
    notifications = Notification.objects.filter(order_id=order["id"])
    wait_until(lambda: notifications.count() == 3, what="the order's notifications")
    assert notifications.get(channel="in_app").recipient == "ann"
