#!/usr/bin/env python3
"""Walk a running hub through the demo's whole API flow, following its live events.

    python demo_script.py [URL]        # default http://127.0.0.1:8000

Every step prints one line: method, path, status code and what came back. A
WebSocket on /ws/events/ runs beside the steps for the whole run and prints each
event as it arrives. At the end the script waits (at most --wait seconds) for
the demo's notifications to be delivered, shows them, and prints a summary.

Exit status: 0 when every step answered as expected, the socket delivered the
demo's events and every notification reached a final status; 1 otherwise,
naming the step; 2 for bad options. Only the standard library, httpx and
websockets are needed, so the script also runs outside the hub's checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_ADMIN_USERNAME = "krushnappan"
DEFAULT_ADMIN_PASSWORD = "admin_password"
FINAL_STATUSES = {"sent", "failed", "skipped"}
# A throttled sign-in (AUTH_THROTTLE_RATE, 10 a minute by default) is waited
# out once when the hub asks for no more than this: a presenter re-running the
# demo a few times in a minute should not see it fail.
MAX_THROTTLE_WAIT_SECONDS = 65
POLL_SECONDS = 0.5

# The seed's payloads. The order number, the customer's email and the
# tracking number are unique in the hub, so each run appends its run id.
SEED_USER = {
    "username": "demo_user",
    "password": "secure_password123",
    "email": "demo@example.com",
    "first_name": "Demo",
    "last_name": "User",
}
SEED_CUSTOMER = {
    "name": "John Doe",
    "email": "john.doe@example.com",
    "phone": "+1234567890",
    "telegram_chat_id": "123456789",
    "address": "123 Main St",
    "city": "New York",
    "country": "USA",
    "postal_code": "10001",
}
SEED_ORDER = {
    "order_number": "ORD-001",
    "total_amount": "149.99",
    "currency": "INR",
    "shipping_address": "123 Main St, Mumbai, Maharashtra 400001",
    "shipping_method": "standard",
    "status": "pending",
    "notes": "Urgent delivery required",
}
SEED_SHIP = {"status": "shipped", "tracking_number": "TRK123456789", "notes": "Package shipped via express delivery"}
SEED_PREFERENCES = {"email_enabled": True, "telegram_enabled": False, "order_updates": True, "promotional": False}
SEED_SEND = {
    "title": "Demo Notification",
    "message": "This is a test notification!",
    "recipient_type": "email",
    "recipient": "demo@example.com",
    "priority": "high",
}
SEED_BULK = {
    "notifications": [
        {
            "title": "Bulk Notification 1",
            "message": "First bulk message",
            "recipient_type": "email",
            "recipient": "user1@example.com",
        },
        {
            "title": "Bulk Notification 2",
            "message": "Second bulk message",
            "recipient_type": "telegram",
            "recipient": "123456789",
        },
    ]
}

Json = dict[str, Any]


def _components(body: Json) -> str:
    names = ", ".join(f"{name} {'ok' if c['ok'] else 'DOWN'}" for name, c in body["components"].items())
    return f"{body['status']}, {body['mode']} mode ({names})"


class DemoFailed(Exception):
    """Stops the run; the message says which step and why."""


class Output:
    """Whole lines from both threads, flushed at once so a pipe shows them live."""

    def __init__(self, color: bool):
        self.color = color
        self.lock = threading.Lock()

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def line(self, text: str = "", *, stream=None) -> None:
        with self.lock:
            print(text, file=stream or sys.stdout, flush=True)


# ---- live events -------------------------------------------------------------------


def event_summary(event: Json) -> str:
    """One short line about an event envelope's data."""
    data, kind = event.get("data") or {}, event.get("type", "")
    if kind.startswith("order."):
        text = str(data.get("order_number", data.get("order_id")))
        if kind == "order.status_changed":
            return f"{text}: {data.get('old_status')} -> {data.get('new_status')}"
        if kind == "order.updated":
            return f"{text}: {', '.join(sorted(data.get('changes') or {}))} changed"
        if kind == "order.created":
            return f"{text}: {data.get('status')}, {data.get('total_amount')} {data.get('currency')}"
        return text
    if kind == "customer.updated":
        return f"customer {data.get('customer_id')} {data.get('name')}: {', '.join(data.get('changed') or [])} changed"
    if kind.startswith("notification."):
        text = f"#{data.get('notification_id')} {data.get('channel')} to {data.get('recipient') or '-'}"
        status = data.get("status")
        if kind == "notification.status_changed":
            text += f": {data.get('old_status')} -> {status}"
        else:
            text += f": {status}, {data.get('title')!r}"
        if data.get("last_error"):
            text += f" ({data['last_error']})"
        return text
    return json.dumps(data)[:100]


class EventWatcher(threading.Thread):
    """Follows /ws/events/ in the background and prints what arrives."""

    def __init__(self, url: str, headers: dict[str, str], out: Output):
        super().__init__(name="live-events", daemon=True)
        self.url, self.headers, self.out = url, headers, out
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.error: str | None = None
        self.events: list[Json] = []

    def run(self) -> None:
        try:
            with connect(self.url, additional_headers=self.headers, open_timeout=10, close_timeout=2) as socket:
                self.connected.set()
                self._follow(socket)
        except InvalidStatus as exc:
            self.error = f"the hub refused the socket at {self.url} (HTTP {exc.response.status_code})"
        except ConnectionClosed as exc:
            if not self.stopping.is_set():
                self.error = f"the socket closed during the run ({exc})"
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            self.error = f"cannot open the socket at {self.url}: {exc or type(exc).__name__}"
        except Exception as exc:  # a frame this script cannot read: say so rather than die silently
            self.error = f"reading the socket failed: {exc!r}"
        finally:
            self.connected.set()  # wake anyone waiting for the handshake, failed or not

    def _follow(self, socket: ClientConnection) -> None:
        while not self.stopping.is_set():
            try:
                raw = socket.recv(timeout=0.25)
            except TimeoutError:
                continue
            self._handle(json.loads(raw))

    def _handle(self, message: Json) -> None:
        kind = message.get("type")
        if isinstance(message.get("id"), int):
            with self.lock:
                self.events.append(message)
            label = self.out.paint(f"{kind:<27}", "36")
            self.out.line(f"      event #{message['id']:<5} {label} {event_summary(message)}")
        elif kind == "resync_required":
            self.out.line(f"      event: resync required ({(message.get('data') or {}).get('reason')})")
        elif kind == "error":
            self.out.line(f"      event: the hub says {message.get('error')}")
        # pong and heartbeat say only that the socket is alive.

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)

    def snapshot(self) -> list[Json]:
        with self.lock:
            return list(self.events)

    def seen(self, kind: str, **match: Any) -> bool:
        return any(e["type"] == kind and all(e["data"].get(k) == v for k, v in match.items()) for e in self.snapshot())


def socket_url(base_url: str, query: dict[str, Any] | None = None) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/events/", urlencode(query or {}), ""))


# ---- the API -----------------------------------------------------------------------


def error_text(response: httpx.Response) -> str:
    """The hub's error shape in one line, or the start of whatever came back."""
    if response.is_redirect:
        # A hub with HTTPS_ONLY on sends plain HTTP (but its health probes) to https://.
        return f"redirected to {response.headers.get('location')}: give that URL, or run the hub with HTTPS_ONLY=0"
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200].strip() or response.reason_phrase
    text = f"{error.get('code')}: {error.get('message')}"
    fields = error.get("fields") or {}
    if fields:
        text += " " + "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
    return text


class Demo:
    def __init__(self, args: argparse.Namespace, out: Output):
        self.args, self.out = args, out
        self.base_url = args.url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=args.timeout)
        self.run_id: str = args.run_id
        self.step = 0
        self.user_token = self.admin_token = ""
        self.watcher: EventWatcher | None = None
        self.customer_id = 0
        self.order: Json = {}
        self.manual_ids: list[int] = []
        self.notifications: dict[int, Json] = {}
        self.started = time.monotonic()

    # -- one request, one line --

    def call(
        self,
        label: str,
        method: str,
        path: str,
        *,
        token: str = "",
        body: Json | None = None,
        expect: Iterable[int] = (200,),
        detail: Callable[[Any], str] | None = None,
    ) -> httpx.Response:
        self.socket_check()
        self.step += 1
        response = self._send(label, method, path, token, body)
        expected = tuple(expect)
        line = f"{self.step:>2}  {label:<26} {method:<6} {path:<40}"
        if response.status_code not in expected:
            self.out.line(f"{line} {self.out.paint(str(response.status_code), '31')}  {error_text(response)}")
            want = " or ".join(map(str, expected))
            raise DemoFailed(
                f"step {self.step} ({label}: {method} {path}) answered {response.status_code}, "
                f"expected {want}: {error_text(response)}"
            )
        text = ""
        if detail:
            text = detail(response.json() if response.content else None)
        elif response.status_code >= 400:
            text = error_text(response)
        self.out.line(f"{line} {self.out.paint(str(response.status_code), '32')}  {text}".rstrip())
        return response

    def _send(self, label: str, method: str, path: str, token: str, body: Json | None) -> httpx.Response:
        response = self._request(label, method, path, token, body)
        wait = self._throttle_wait(response)
        if wait is None:
            return response
        self.out.line(f"    {method} {path} throttled: waiting {wait} s as the hub asks")
        time.sleep(wait)
        return self._request(label, method, path, token, body)

    def _request(self, label: str, method: str, path: str, token: str, body: Json | None) -> httpx.Response:
        headers = {"Authorization": f"Token {token}"} if token else {}
        try:
            return self.http.request(method, path, headers=headers, json=body)
        except httpx.TransportError as exc:
            raise DemoFailed(
                f"step {self.step} ({label}: {method} {path}): cannot reach the hub at {self.base_url}: "
                f"{exc or type(exc).__name__}"
            ) from None

    @staticmethod
    def _throttle_wait(response: httpx.Response) -> int | None:
        if response.status_code != 429:
            return None
        try:
            wait = int(response.json()["error"]["retry_after"])
        except (ValueError, KeyError, TypeError):
            wait = int(response.headers.get("Retry-After", "0") or 0)
        return wait if 0 < wait <= MAX_THROTTLE_WAIT_SECONDS else None

    def section(self, title: str) -> None:
        self.out.line()
        self.out.line(self.out.paint(title, "1"))

    def socket_check(self) -> None:
        if self.watcher and self.watcher.error:
            raise DemoFailed(f"live events: {self.watcher.error}")

    # -- the seed's sections --

    def health(self) -> None:
        self.section("1. System health")

        # Anyone gets the status; the components are for staff, signed in further on.
        self.call("System health", "GET", "/api/v1/health/", detail=lambda h: h["status"])

    def authenticate(self) -> None:
        self.section("2. Authentication")
        user = SEED_USER["username"]
        response = self.call(
            f"Register {user}",
            "POST",
            "/api/v1/auth/register/",
            body=SEED_USER,
            expect=(201, 400),
            detail=lambda u: (
                f"user {u['id']} {u['username']} <{u['email']}>" if "id" in u else "exists already: signing in"
            ),
        )
        fields = (response.json().get("error") or {}).get("fields") or {}
        if response.status_code == 400 and "username" not in fields:
            # Anything but "taken" (a taken email alone, say) is a real refusal.
            raise DemoFailed(f"step {self.step} (Register {user}): {error_text(response)}")
        self.user_token = self.sign_in(f"Token for {user}", user, SEED_USER["password"])
        self.watch()
        admin = self.args.admin_username
        self.admin_token = self.sign_in(f"Token for {admin}", admin, self.args.admin_password, admin=True)
        self.check_token(self.user_token, user, staff=False)
        self.check_token(self.admin_token, admin, staff=True)

    def sign_in(self, label: str, username: str, password: str, *, admin: bool = False) -> str:
        try:
            response = self.call(
                label,
                "POST",
                "/api/v1/auth/token/",
                body={"username": username, "password": password},
                detail=lambda t: f"token {t['token'][:8]}..., expires {t['expires_at']}",
            )
        except DemoFailed as exc:
            hint = (
                " Give the staff account with --admin-username/--admin-password (or HUB_ADMIN_USERNAME/"
                "HUB_ADMIN_PASSWORD)."
                if admin
                else f" {username} exists with another password; change it back or use a fresh database."
            )
            raise DemoFailed(f"{exc}{hint}") from None
        return response.json()["token"]

    def check_token(self, token: str, username: str, *, staff: bool) -> None:
        response = self.call(
            f"Check token ({username})",
            "GET",
            "/api/v1/auth/token/check/",
            token=token,
            detail=lambda c: f"valid, {c['user']['username']}, {'staff' if c['is_admin'] else 'regular user'}",
        )
        if staff and not response.json()["is_admin"]:
            raise DemoFailed(f"step {self.step}: {username} is not staff; the order steps need a staff account")

    def watch(self) -> None:
        """Open the live socket now, before anything the demo changes, so no event is missed."""
        headers, query, how = {"Authorization": f"Token {self.user_token}"}, None, "token in the Authorization header"
        if self.args.socket_auth == "ticket":
            ticket = self.call(
                "Ticket for the socket",
                "POST",
                "/api/v1/realtime/ticket/",
                token=self.user_token,
                expect=(201,),
                detail=lambda t: f"one-time, {t['expires_in']} s; event log at #{t['last_event_id']}",
            ).json()
            # The ticket's position makes the socket replay whatever commits before it opens.
            headers, query, how = {}, {"ticket": ticket["ticket"], "last_event_id": ticket["last_event_id"]}, "ticket"
        url = socket_url(self.base_url, query)
        self.watcher = EventWatcher(url, headers, self.out)
        self.watcher.start()
        self.watcher.connected.wait(15)
        self.socket_check()
        if not self.watcher.is_alive():
            raise DemoFailed(f"live events: the socket at {url} did not open")
        self.out.line(f"    live events: following {socket_url(self.base_url)} as {SEED_USER['username']} ({how})")

    def customers(self) -> None:
        self.section("3. Customers")
        customer = {**SEED_CUSTOMER, "email": f"john.doe+{self.run_id}@example.com"}
        created = self.call(
            "Create customer",
            "POST",
            "/api/v1/customers/",
            token=self.user_token,
            body=customer,
            expect=(201,),
            detail=lambda c: f"customer {c['id']} {c['name']} <{c['email']}>",
        ).json()
        self.customer_id = created["id"]
        path = f"/api/v1/customers/{self.customer_id}/"
        self.call(
            "List customers",
            "GET",
            "/api/v1/customers/",
            token=self.user_token,
            detail=lambda p: f"{p['count']} visible to {SEED_USER['username']}",
        )
        self.call("Get customer", "GET", path, token=self.user_token, detail=lambda c: f"{c['name']}, {c['phone']}")
        self.call(
            "Update customer",
            "PATCH",
            path,
            token=self.user_token,
            body={"phone": "+1987654321"},
            detail=lambda c: f"phone now {c['phone']}",
        )

    def orders(self) -> None:
        self.section("4. Orders (each change notifies the customer)")
        body = {**SEED_ORDER, "order_number": f"{SEED_ORDER['order_number']}-{self.run_id}"}
        self.order = self.call(
            "Create order",
            "POST",
            "/api/v1/orders/",
            token=self.user_token,
            body=body,
            expect=(201,),
            detail=lambda o: (
                f"order {o['id']} {o['order_number']}, {o['status']}, {o['total_amount']} {o['currency']}, "
                f"for {o['customer']['name']} <{o['customer']['email']}>, {o['tracking_number']}"
            ),
        ).json()
        path = f"/api/v1/orders/{self.order['id']}/"

        def moved(o: Json) -> str:
            return f"{o['order_number']} {o['status']}, tracking {o['tracking_number']}"

        admin = self.admin_token
        self.call("Status (staff)", "PUT", f"{path}status/", token=admin, body={"status": "confirmed"}, detail=moved)
        ship = {**SEED_SHIP, "tracking_number": f"{SEED_SHIP['tracking_number']}-{self.run_id}"}
        self.call("Update order (staff)", "PUT", path, token=admin, body=ship, detail=moved)
        self.call("Patch order (staff)", "PATCH", path, token=admin, body={"status": "delivered"}, detail=moved)
        self.call(
            "List orders",
            "GET",
            "/api/v1/orders/",
            token=self.user_token,
            detail=lambda p: f"{p['count']} visible to {SEED_USER['username']}",
        )
        self.call(
            "Get order",
            "GET",
            path,
            token=self.user_token,
            detail=lambda o: "history: " + ", ".join(h["to_status"] or h["kind"] for h in o["history"]),
        )
        self.call(
            "Delete order (staff)",
            "DELETE",
            path,
            token=admin,
            expect=(204,),
            detail=lambda _: f"{self.order['order_number']} deleted; its notifications stay",
        )

    def send_notifications(self) -> None:
        self.section("5. Notifications")
        single = self.call(
            "Send one",
            "POST",
            "/api/v1/notifications/send/",
            token=self.user_token,
            body=SEED_SEND,
            expect=(202,),
            detail=lambda n: f"notification {n['id']}, {n['channel']} to {n['recipient']}, {n['status']}",
        ).json()
        bulk = self.call(
            "Send bulk",
            "POST",
            "/api/v1/notifications/bulk/",
            token=self.user_token,
            body=SEED_BULK,
            expect=(202,),
            detail=lambda b: f"{b['count']} notifications: {', '.join(map(str, b['ids']))}",
        ).json()
        self.manual_ids = [single["id"], *bulk["ids"]]
        self.call(
            "History",
            "GET",
            "/api/v1/notifications/",
            token=self.user_token,
            detail=lambda p: f"{p['count']} notifications visible to {SEED_USER['username']}",
        )
        self.call("Statistics", "GET", "/api/v1/notifications/stats/", token=self.user_token, detail=stats_text)
        self.call(
            "Notification detail",
            "GET",
            f"/api/v1/notifications/{single['id']}/",
            token=self.user_token,
            detail=lambda n: f"{n['title']!r}: {n['status']}, {n['attempts']} attempt(s)",
        )

    def preferences(self) -> None:
        self.section("6. Notification preferences")
        path = f"/api/v1/customers/{self.customer_id}/preferences/"
        self.call("Get preferences", "GET", path, token=self.user_token, detail=preferences_text)
        self.call(
            "Update preferences", "PATCH", path, token=self.user_token, body=SEED_PREFERENCES, detail=preferences_text
        )

    def monitoring(self) -> None:
        self.section("7. Monitoring")
        self.call(
            "System health",
            "GET",
            "/api/v1/health/",
            token=self.user_token,
            detail=lambda h: h["status"],
        )
        self.call("System health, as staff", "GET", "/api/v1/health/", token=self.admin_token, detail=_components)
        # Without REDIS_URL (embedded mode) the hub has no Redis to check and says so with a 200.
        response = self.call(
            "Redis health", "GET", "/health/redis/", token=self.user_token, detail=lambda r: r["status"]
        )
        if response.json().get("status") not in ("ok", "not_configured"):
            raise DemoFailed(f"step {self.step} (Redis health): {response.text}")
        self.call("Worker health", "GET", "/health/celery/", token=self.user_token, detail=lambda w: w["status"])
        self.call(
            "Worker health, as staff",
            "GET",
            "/health/celery/",
            token=self.admin_token,
            detail=lambda w: f"{len(w['workers'])} worker(s) beating; queued: {sum(w['queues'].values())}",
        )

    # -- delivery --

    def demo_notification_ids(self) -> list[int]:
        """The manual sends and every notification the demo's order wrote, as the socket told of them."""
        assert self.watcher is not None
        order_ids = {
            e["data"]["notification_id"]
            for e in self.watcher.snapshot()
            if e["type"] == "notification.created" and e["data"].get("order_id") == self.order.get("id")
        }
        return sorted(order_ids | set(self.manual_ids))

    def await_delivery(self) -> None:
        waiting = self.args.wait > 0
        if waiting:
            self.section(f"Delivery (waiting up to {self.args.wait:g} s for final statuses)")
            deadline = time.monotonic() + self.args.wait
            self._await(deadline, self._socket_caught_up)
            ids = self.demo_notification_ids()
            self._await(deadline, lambda: self._poll(ids))
            self._await(deadline, lambda: not self._missing_events())
        else:
            self.section("Delivery (not waiting: --wait 0)")
            ids = self.demo_notification_ids()
            self._poll(ids)
        for notification_id in ids:
            self.out.line("    " + notification_text(self.notifications[notification_id]))
        if not waiting:
            return
        missing = self._missing_events()
        if missing:
            raise DemoFailed(f"live events: the socket never showed {', '.join(missing)}")
        pending = [n for n in self.notifications.values() if n["status"] not in FINAL_STATUSES]
        if pending:
            listed = ", ".join(f"#{n['id']} {n['status']}" for n in pending)
            raise DemoFailed(
                f"delivery: {len(pending)} notification(s) not delivered after {self.args.wait:g} s ({listed}); "
                "is a worker running? See /health/celery/."
            )

    def _await(self, deadline: float, done: Callable[[], bool]) -> None:
        """Until `done()` or the deadline; the caller says what is still missing."""
        while not done():
            self.socket_check()
            if time.monotonic() >= deadline:
                return
            time.sleep(POLL_SECONDS)

    def _socket_caught_up(self) -> bool:
        assert self.watcher is not None
        return all(self.watcher.seen("notification.created", notification_id=i) for i in self.manual_ids)

    def _poll(self, ids: list[int]) -> bool:
        for notification_id in ids:
            known = self.notifications.get(notification_id)
            if known and known["status"] in FINAL_STATUSES:
                continue
            path = f"/api/v1/notifications/{notification_id}/"
            response = self._send("Delivery", "GET", path, self.admin_token, None)
            if response.status_code != 200:
                raise DemoFailed(f"delivery: GET {path} answered {response.status_code}: {error_text(response)}")
            self.notifications[notification_id] = response.json()
        return all(n["status"] in FINAL_STATUSES for n in self.notifications.values())

    def _missing_events(self) -> list[str]:
        """Events the socket must have shown by now, given what the API says happened."""
        assert self.watcher is not None
        missing = []
        if self.order and not self.watcher.seen("order.created", order_id=self.order["id"]):
            missing.append(f"order.created for {self.order['order_number']}")
        if self.order and not self.watcher.seen("order.status_changed", order_id=self.order["id"]):
            missing.append(f"order.status_changed for {self.order['order_number']}")
        for n in self.notifications.values():
            # Skipped rows are written skipped; only attempts write a status change.
            if n["status"] in ("sent", "failed"):
                if not self.watcher.seen("notification.status_changed", notification_id=n["id"], status=n["status"]):
                    missing.append(f"notification.status_changed to {n['status']} for #{n['id']}")
        return missing

    # -- the end --

    def sign_out(self) -> None:
        self.section("Sign out")
        if self.watcher:
            # A socket ends with the token it opened with (close code 4401): stop following first.
            self.watcher.stop()
            self.out.line("      live events: stopped following")
        for name, token in ((SEED_USER["username"], self.user_token), (self.args.admin_username, self.admin_token)):
            self.call(f"Sign out {name}", "POST", "/api/v1/auth/logout/", token=token, expect=(204,))

    def summary(self) -> None:
        events = self.watcher.snapshot() if self.watcher else []
        by_type = Counter(e["type"] for e in events)
        by_status = Counter(n["status"] for n in self.notifications.values())
        self.section("Summary")
        self.out.line(f"    run:           {self.run_id} against {self.base_url}")
        self.out.line(f"    steps:         {self.step}, all answered as expected")
        self.out.line(f"    order:         {self.order.get('order_number')} (created, moved to delivered, deleted)")
        self.out.line(
            f"    live events:   {len(events)} ({', '.join(f'{t} {c}' for t, c in sorted(by_type.items())) or 'none'})"
        )
        self.out.line(
            f"    notifications: {len(self.notifications)} "
            f"({', '.join(f'{s} {c}' for s, c in sorted(by_status.items())) or 'none'})"
        )
        self.out.line(f"    time:          {time.monotonic() - self.started:.1f} s")
        self.out.line(self.out.paint("    result:        OK", "32"))

    def run(self) -> None:
        self.out.line(f"Notification hub demo: {self.base_url} (run {self.run_id})")
        self.health()
        self.authenticate()
        self.customers()
        self.orders()
        self.send_notifications()
        self.preferences()
        self.monitoring()
        self.await_delivery()
        self.socket_check()
        self.sign_out()
        self.summary()

    def close(self) -> None:
        if self.watcher:
            self.watcher.stop()
        self.http.close()


def stats_text(stats: Json) -> str:
    overall = stats["overall"]
    counts = ", ".join(f"{status} {n}" for status, n in overall["by_status"].items() if n)
    rate = overall["success_rate"]
    return f"{overall['total']} total ({counts}); success rate {'-' if rate is None else f'{rate:.0%}'}"


def preferences_text(p: Json) -> str:
    names = ("email_enabled", "telegram_enabled", "order_updates", "promotional")
    return ", ".join(f"{name.removesuffix('_enabled')} {'on' if p[name] else 'off'}" for name in names)


def notification_text(n: Json) -> str:
    text = f"#{n['id']:<5} {n['channel']:<8} {n['recipient'] or '-':<24} {n['status']:<8} {n['title']!r}"
    if n["attempts"]:
        text += f", {n['attempts']} attempt(s)"
    if n["last_error"]:
        text += f" ({n['last_error']})"
    return text


# ---- command line ------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the demo's API flow against a running notification hub and follow its live events.",
    )
    parser.add_argument("url", nargs="?", default=os.environ.get("HUB_URL", DEFAULT_URL), help=f"default {DEFAULT_URL}")
    parser.add_argument(
        "--admin-username",
        default=os.environ.get("HUB_ADMIN_USERNAME", DEFAULT_ADMIN_USERNAME),
        help="staff account for the staff-only steps (env HUB_ADMIN_USERNAME; default %(default)s)",
    )
    parser.add_argument(
        "--admin-password",
        default=os.environ.get("HUB_ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD),
        help="its password (env HUB_ADMIN_PASSWORD; default the demo account's)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait at the end for the notifications to be delivered; 0 to not wait (default %(default)g)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per HTTP request (default %(default)g)"
    )
    parser.add_argument(
        "--run-id",
        default=secrets.token_hex(3),
        help="suffix making this run's order number, customer email and tracking number unique (default random)",
    )
    parser.add_argument(
        "--socket-auth",
        choices=("header", "ticket"),
        default="header",
        help="authenticate /ws/events/ with the token in a header, or a one-time ticket (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https") or not urlsplit(args.url).netloc:
        parser.error(f"URL must look like {DEFAULT_URL}, not {args.url!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,19}", args.run_id):
        parser.error("--run-id: 1-20 letters, digits or '-', starting with a letter or digit")
    if args.wait < 0 or args.timeout <= 0:
        parser.error("--wait must be at least 0 and --timeout above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse's own exit, after --help (0) or a bad option (2)
        return int(exc.code or 0)
    out = Output(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    demo = Demo(args, out)
    try:
        demo.run()
    except DemoFailed as exc:
        out.line()
        out.line(out.paint(f"FAILED: {exc}", "31"), stream=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out.line("interrupted", stream=sys.stderr)
        return 130
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
