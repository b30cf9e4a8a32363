"""The live event stream (`/ws/events/`) in services mode with real parts:
Daphne and `rundramatiq` processes on real PostgreSQL and Redis, sockets
opened over the network with the `websockets` client."""

import json
import socket
import threading
import time
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from notify.models import FINAL_STATUSES, Notification, NotificationStatus
from realtime.models import Event
from realtime.selectors import events_after
from tests.e2e.conftest import api_client, relayed_all, token_for, wait_until
from tests.factories import PASSWORD, StaffFactory, UserFactory
from tests.fakes import free_port
from tests.helpers import SEED_ORDER, SEED_SEND

pytestmark = pytest.mark.e2e

OPEN_TIMEOUT = 10
EVENT_TIMEOUT = 10  # a live event published by the web process
WORKER_TIMEOUT = 30  # one that waits for the worker to deliver a notification
# Quiet past 5 s, redis-py's default read timeout, which must not end a socket or the subscription.
IDLE_SECONDS = 6
ENVELOPE_KEYS = {"id", "type", "ts", "data"}
STATUS_CHANGED = "notification.status_changed"


def _ws_url(url, **query):
    return url.replace("http://", "ws://", 1) + "/ws/events/" + (f"?{urlencode(query)}" if query else "")


def _connect(url, token=None, origin=None, **query):
    headers = {"Authorization": f"Token {token}"} if token else None
    return connect(
        _ws_url(url, **query), additional_headers=headers, origin=origin, proxy=None, open_timeout=OPEN_TIMEOUT
    )


def _refused(url, token=None, origin=None, **query):
    """The status the server answered a handshake it refused with."""
    with pytest.raises(InvalidStatus) as refused:
        _connect(url, token, origin, **query).close()
    return refused.value.response.status_code


class Stream:
    """One socket, read event by event; `seen` keeps every event envelope in
    arrival order. Heartbeats are passed over; any other message outside the
    log (a resync, an error) fails the test."""

    def __init__(self, ws):
        self.ws = ws
        self.seen = []

    def _message(self, deadline, what):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events so far: {self._summary()}")
            try:
                message = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if message.get("type") != "heartbeat":
                return message

    def _summary(self):
        return [(e["id"], e["type"], e["data"].get("status")) for e in self.seen]

    def _event(self, message):
        assert set(message) == ENVELOPE_KEYS and message["id"] is not None, message
        self.seen.append(message)

    def wait_for(self, done, timeout=EVENT_TIMEOUT, what="events"):
        """Read events until `done(self.seen)` holds."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            self._event(self._message(deadline, what))
        return self.seen

    def take(self, count, timeout=EVENT_TIMEOUT):
        """The next `count` events."""
        start = len(self.seen)
        self.wait_for(lambda seen: len(seen) >= start + count, timeout, f"{count} events")
        return self.seen[start:]

    def sync(self, timeout=EVENT_TIMEOUT):
        """A ping/pong round trip; returns the events that came before the pong."""
        start = len(self.seen)
        self.ws.send(json.dumps({"action": "ping"}))
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline, "the pong")
            if message.get("type") == "pong":
                return self.seen[start:]
            self._event(message)

    def close(self):
        self.ws.close()


@pytest.fixture
def open_stream():
    """open_stream(url, token=..., **query) -> an open Stream, closed after the test."""
    streams = []

    def open_(url, token=None, origin=None, **query):
        stream = Stream(_connect(url, token, origin, **query))
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def _ids(events):
    return [e["id"] for e in events]


def _about_orders(events):
    """The events about an order: all but an inbox's counts."""
    return [e for e in events if e["type"] != "inbox.counts_changed"]


def _order_of(event):
    """The order an event is about: `order_id`, or `order` for an inbox message."""
    return event["data"].get("order_id", event["data"].get("order"))


def _of_order(order_id):
    return lambda e: _order_of(e) == order_id


def _shared(events):
    """The events all staff see too: not a user's own inbox."""
    return [e for e in events if not e["type"].startswith("inbox.")]


def _sent(events, count, order_id=None):
    """`count` notifications of the order (any, if None) reported sent."""
    return (
        len(
            [
                e
                for e in events
                if e["type"] == "notification.status_changed"
                and e["data"]["status"] == NotificationStatus.SENT
                and (order_id is None or e["data"]["order_id"] == order_id)
            ]
        )
        >= count
    )


def _all_final(**filters):
    def check():
        rows = list(Notification.objects.filter(**filters).values_list("status", flat=True))
        return rows and all(status in FINAL_STATUSES for status in rows)

    return check


def _log(user):
    """(id, type) of every event in the log that `user` may see, in id order,
    once the relay has moved in everything committed."""
    relayed_all()
    return [(event.id, event.type) for event in events_after(user=user, after=0, limit=100_000)]


def test_order_events_reach_the_owner_and_staff_and_nobody_else(services_hub, open_stream):
    url = services_hub.url
    owner, other = UserFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    staff = StaffFactory(password=PASSWORD)
    owner_key, other_key, staff_key = token_for(url, owner), token_for(url, other), token_for(url, staff)
    owner_ws, other_ws, staff_ws = open_stream(url, owner_key), open_stream(url, other_key), open_stream(url, staff_key)

    r = api_client(url, owner_key).post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    r = api_client(url, staff_key).put(f"/orders/{order_id}/status/", json={"status": "confirmed"})
    assert r.status_code == 200, r.text

    for ws in (owner_ws, staff_ws):
        # Both emails and both inbox messages (order received, order confirmed) sent by the worker.
        ws.wait_for(lambda seen: _sent(seen, 4, order_id), WORKER_TIMEOUT, "emails and inbox messages sent")
        ws.sync()
        orders = [e for e in ws.seen if e["type"].startswith("order.")]
        assert [e["type"] for e in orders] == ["order.created", "order.status_changed"]
        created, changed = orders
        assert created["data"]["order_id"] == changed["data"]["order_id"] == order_id
        assert created["data"]["order_number"] == "ORD-001"
        assert created["data"]["status"] == "pending"
        assert (changed["data"]["old_status"], changed["data"]["new_status"]) == ("pending", "confirmed")
        assert created["id"] < changed["id"]
        assert all(_order_of(e) == order_id for e in _about_orders(ws.seen))
        # Every event of the log this user may see, each once.
        assert sorted(_ids(ws.seen)) == [pk for pk, _ in _log(owner if ws is owner_ws else staff)]
    # The same events to both, but for the owner's inbox, which is theirs alone.
    assert sorted(_ids(staff_ws.seen)) == sorted(_ids(_shared(owner_ws.seen)))
    inbox = [e["type"] for e in owner_ws.seen if e not in _shared(owner_ws.seen)]
    assert inbox == ["inbox.message_created", "inbox.counts_changed"] * 2

    # The other user places an order of their own, after all of the above
    # was delivered: its event comes to them, with nothing before it.
    r = api_client(url, other_key).post("/orders/", json={**SEED_ORDER, "order_number": "ORD-002"})
    assert r.status_code == 201, r.text
    other_order = r.json()["id"]
    other_ws.wait_for(lambda seen: any(e["type"] == "order.created" for e in seen), what="their own order")
    other_ws.sync()
    assert other_ws.seen[0]["type"] == "order.created"
    assert all(_order_of(e) == other_order for e in _about_orders(other_ws.seen))
    staff_ws.wait_for(lambda seen: any(_of_order(other_order)(e) for e in seen), what="the other order")
    assert not [e for e in owner_ws.sync() if _of_order(other_order)(e)]


def test_the_handshake_needs_credentials_and_no_foreign_origin(services_hub, open_stream):
    url = services_hub.url
    key = token_for(url, UserFactory(password=PASSWORD))

    assert _refused(url) == 403
    assert _refused(url, "not-a-real-token") == 403
    assert _refused(url, key, origin="http://evil.example") == 403

    assert open_stream(url, key).sync() == []  # no Origin: a script, accepted
    assert open_stream(url, key, origin=url).sync() == []  # our own page


def test_an_idle_socket_stays_open(services_hub, open_stream):
    url = services_hub.url
    key = token_for(url, UserFactory(password=PASSWORD))
    ws = open_stream(url, key)

    with pytest.raises(TimeoutError):  # not ConnectionClosed
        ws.ws.recv(timeout=IDLE_SECONDS)
    assert ws.sync() == []
    r = api_client(url, key).post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    assert ws.take(1)[0]["type"] == "order.created"


def test_a_ticket_opens_one_socket(services_hub, open_stream):
    url = services_hub.url
    user = UserFactory(password=PASSWORD)
    key = token_for(url, user)
    assert httpx.post(f"{url}/api/v1/realtime/ticket/").status_code in (401, 403)
    r = api_client(url, key).post("/realtime/ticket/")
    assert r.status_code == 201, r.text
    ticket = r.json()["ticket"]
    assert r.json()["expires_in"] > 0

    ws = open_stream(url, ticket=ticket)
    assert ws.sync() == []
    assert _refused(url, ticket=ticket) == 403
    assert _refused(url, ticket="made-up") == 403

    # The socket is the ticket's user's: their order's events come to it.
    r = api_client(url, key).post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    (event,) = ws.take(1)
    assert (event["type"], event["data"]["order_id"]) == ("order.created", r.json()["id"])


def test_resume_replays_exactly_the_missed_events_then_goes_live(services_hub, open_stream):
    url = services_hub.url
    owner, staff = UserFactory(password=PASSWORD), StaffFactory(password=PASSWORD)
    owner_key, staff_key = token_for(url, owner), token_for(url, staff)
    owner_api, staff_api = api_client(url, owner_key), api_client(url, staff_key)

    first = open_stream(url, owner_key)
    r = owner_api.post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    first.wait_for(lambda seen: _sent(seen, 2, order_id), WORKER_TIMEOUT, "the order email and inbox message sent")
    first.sync()
    assert sorted(_ids(first.seen)) == [pk for pk, _ in _log(owner)]
    last_event_id = max(_ids(first.seen))
    first.close()

    # Changes while away, each left to settle so the log's order is known.
    assert staff_api.put(f"/orders/{order_id}/status/", json={"status": "confirmed"}).status_code == 200
    wait_until(_all_final(order_id=order_id), what="the confirmation's notifications to end")
    r = owner_api.post("/notifications/send/", json={**SEED_SEND, "recipient": owner.email})
    assert r.status_code == 202, r.text
    notification_id = r.json()["id"]
    wait_until(_all_final(pk=notification_id), what="the notification to end")
    missed = [(pk, kind) for pk, kind in _log(owner) if pk > last_event_id]
    kinds = [kind for _, kind in missed]
    assert kinds[:4] == [
        "order.status_changed",
        "notification.created",  # email
        "notification.created",  # Telegram, skipped: no chat id on file
        "notification.created",  # the owner's inbox
    ]
    # The worker's: the inbox message stored, the email and it sent; then the one sent over REST.
    assert sorted(kinds[4:-2]) == sorted(["inbox.message_created", "inbox.counts_changed"] + [STATUS_CHANGED] * 2)
    assert kinds[-2:] == ["notification.created", STATUS_CHANGED]

    second = open_stream(url, owner_key, last_event_id=last_event_id)
    replayed = second.take(len(missed))
    assert [(e["id"], e["type"]) for e in replayed] == missed
    assert replayed[0]["data"]["new_status"] == "confirmed"
    assert replayed[-1]["data"]["notification_id"] == notification_id
    assert replayed[-1]["data"]["status"] == "sent"
    assert second.sync() == []  # nothing more, nothing twice

    # Live again from where the replay ended.
    assert staff_api.put(f"/orders/{order_id}/status/", json={"status": "processing"}).status_code == 200
    second.wait_for(lambda seen: _sent(seen, 4, order_id), WORKER_TIMEOUT, "the processing email reported sent")
    second.sync()
    live = second.seen[len(replayed) :]
    assert live[0]["type"] == "order.status_changed"
    assert live[0]["data"]["new_status"] == "processing"
    assert min(_ids(live)) > missed[-1][0]
    assert len(set(_ids(second.seen))) == len(second.seen)
    assert sorted(_ids(second.seen)) == [pk for pk, _ in _log(owner) if pk > last_event_id]


def test_a_resume_during_a_burst_of_writes_loses_and_repeats_nothing(services_hub, open_stream):
    """Events committed while the socket joins its group and replays come
    once: replayed or live, never both, never neither."""
    url = services_hub.url
    user = UserFactory(password=PASSWORD)
    key = token_for(url, user)
    assert api_client(url, key).post("/notifications/send/", json=SEED_SEND).status_code == 202
    relayed_all()
    last_event_id = Event.objects.latest("id").id
    count, answers = 15, []

    def burst():
        with api_client(url, key) as api:
            for i in range(count):
                answers.append(api.post("/notifications/send/", json={**SEED_SEND, "title": f"N{i}"}).status_code)

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        # Reconnect partway through: some of the burst is in the log, more is to come.
        wait_until(lambda: Event.objects.filter(id__gt=last_event_id).count() >= 3, what="the burst under way")
        ws = open_stream(url, key, last_event_id=last_event_id)
    finally:
        writer.join()
    assert answers == [202] * count
    # The burst's notifications, and the first one if it was sent after last_event_id.
    wait_until(_all_final(sender=user), what="every notification to end")
    expected = [pk for pk, _ in _log(user) if pk > last_event_id]
    ws.wait_for(lambda seen: len(seen) >= len(expected), WORKER_TIMEOUT, f"{len(expected)} events")
    ws.sync()
    assert len(set(_ids(ws.seen))) == len(ws.seen), "an event came twice"
    assert sorted(_ids(ws.seen)) == expected


def test_a_sent_notification_reaches_its_sender_live(services_hub, open_stream):
    url = services_hub.url
    user = UserFactory(password=PASSWORD)
    key = token_for(url, user)
    ws = open_stream(url, key)

    r = api_client(url, key).post("/notifications/send/", json=SEED_SEND)
    assert r.status_code == 202, r.text
    notification_id = r.json()["id"]

    ws.wait_for(lambda seen: _sent(seen, 1), WORKER_TIMEOUT, "the notification reported sent")
    assert [e["type"] for e in ws.seen] == ["notification.created", "notification.status_changed"]
    created, sent = ws.seen
    assert created["data"]["notification_id"] == sent["data"]["notification_id"] == notification_id
    assert created["data"]["status"] == "pending"
    assert (sent["data"]["old_status"], sent["data"]["status"]) == ("sending", "sent")
    assert sent["data"]["sent_at"] and sent["data"]["recipient"] == SEED_SEND["recipient"]
    assert [m["to"] for m in services_hub.sink.messages] == [[SEED_SEND["recipient"]]]


def test_a_socket_on_one_web_process_gets_events_from_the_other_and_the_worker(services_hub, open_stream):
    url_a = services_hub.url
    url_b = services_hub.start_web("web_b", free_port())
    owner, staff = UserFactory(password=PASSWORD), StaffFactory(password=PASSWORD)
    owner_key, staff_key = token_for(url_b, owner), token_for(url_b, staff)
    on_a, staff_on_b = open_stream(url_a, owner_key), open_stream(url_b, staff_key)

    # Writes served by B; the owner's socket is on A.
    r = api_client(url_b, owner_key).post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    on_a.wait_for(lambda seen: any(e["type"] == "order.created" for e in seen), what="order.created from B")
    r = api_client(url_b, staff_key).put(f"/orders/{order_id}/status/", json={"status": "confirmed"})
    assert r.status_code == 200, r.text
    on_a.wait_for(lambda seen: any(e["type"] == "order.status_changed" for e in seen), what="the change from B")
    r = api_client(url_b, owner_key).post("/notifications/send/", json=SEED_SEND)
    assert r.status_code == 202, r.text
    notification_id = r.json()["id"]

    # From the worker: both order emails, their inbox messages, and the one sent over REST.
    on_a.wait_for(lambda seen: _sent(seen, 5), WORKER_TIMEOUT, "five notifications reported sent")
    on_a.sync()
    sent = {e["data"]["notification_id"] for e in on_a.seen if e["type"] == "notification.status_changed"}
    assert notification_id in sent and len(sent) == 5
    assert sorted(_ids(on_a.seen)) == [pk for pk, _ in _log(owner)]

    # And the other way round: a write served by A reaches a socket on B.
    r = api_client(url_a, staff_key).put(f"/orders/{order_id}/status/", json={"status": "processing"})
    assert r.status_code == 200, r.text
    staff_on_b.wait_for(
        lambda seen: any(e["data"].get("new_status") == "processing" for e in seen), what="the change from A"
    )
    on_a.wait_for(lambda seen: _sent(seen, 7), WORKER_TIMEOUT, "the processing email and inbox message sent")
    on_a.sync()
    assert len(set(_ids(on_a.seen))) == len(on_a.seen)
    assert sorted(_ids(on_a.seen)) == [pk for pk, _ in _log(owner)]


def _stalled_socket(url, token):
    """A socket whose client reads nothing after the handshake: a small kernel
    receive buffer, and a client that queues one frame before it stops reading."""
    host, port = url.removeprefix("http://").split(":")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((host, int(port)))
    headers = {"Authorization": f"Token {token}"}
    return connect(_ws_url(url), sock=raw, additional_headers=headers, max_queue=1, open_timeout=OPEN_TIMEOUT)


def test_a_socket_whose_client_stops_reading_is_dropped_and_costs_the_others_nothing(services_hub):
    bound = 1024 * 1024  # more than a batch: a reading socket falls behind a burst by less
    url = services_hub.start_web("web_small_buffers", free_port(), REALTIME_SOCKET_BUFFER_BYTES=str(bound))
    staff = StaffFactory(password=PASSWORD)
    key = token_for(url, staff)
    # Read as it comes, whatever the test does meanwhile: the client's queue has no bound.
    reader = Stream(connect(_ws_url(url), additional_headers={"Authorization": f"Token {key}"}, max_queue=None))
    stalled = _stalled_socket(url, key)
    assert reader.sync() == []  # open, with nothing yet

    items = [{**SEED_SEND, "title": f"Bulk {i} ".ljust(200, "x")} for i in range(1000)]
    with api_client(url, key) as api:
        # About 10 MB of events (each about 600 bytes, created and sent): more
        # than the kernel's buffers on loopback (4 MB at most) and the bound together.
        for _ in range(8):
            assert api.post("/notifications/bulk/", json={"notifications": items}).status_code == 202
    reader.wait_for(
        lambda seen: sum(e["type"] == "notification.created" for e in seen) == 8000, WORKER_TIMEOUT, "8,000 created"
    )
    wait_until(
        lambda: "Socket dropped" in services_hub.output("web_small_buffers"), what="the stalled socket to be dropped"
    )

    # The stalled client finds its connection cut once it reads what reached it.
    with pytest.raises(ConnectionClosed):
        while True:
            stalled.recv(timeout=EVENT_TIMEOUT)
    # The reading socket got everything, in order, as the log has it.
    reader.sync()
    ids = _ids(reader.seen)
    reader.close()
    assert ids == [pk for pk, _ in _log(staff) if ids[0] <= pk <= ids[-1]]
    log = services_hub.output("web_small_buffers")
    assert log.count("Socket dropped") == 1, log[-3000:]


def test_an_order_reaches_its_accounts_inbox_live_and_read_all_follows_on_every_device(services_hub, open_stream):
    url = services_hub.url
    owner, other = UserFactory(password=PASSWORD), UserFactory(password=PASSWORD)
    owner_key, other_key = token_for(url, owner), token_for(url, other)
    owner_api = api_client(url, owner_key)
    r = owner_api.post("/customers/", json={"name": "Ann Lee", "email": owner.email, "telegram_chat_id": "4242"})
    assert r.status_code == 201, r.text
    laptop, phone, theirs = open_stream(url, owner_key), open_stream(url, owner_key), open_stream(url, other_key)

    r = owner_api.post("/orders/", json=SEED_ORDER)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]

    # Mail, Telegram and the inbox: all three sent, the inbox message live on both devices.
    for ws in (laptop, phone):
        ws.wait_for(lambda seen: _sent(seen, 3, order_id), WORKER_TIMEOUT, "the order's three notifications sent")
        ws.sync()
        (created,) = [e for e in ws.seen if e["type"] == "inbox.message_created"]
        assert created["data"]["order"] == order_id and created["data"]["title"] == "Order ORD-001 received"
        assert created["data"]["read_at"] is None
        counts = [e["data"] for e in ws.seen if e["type"] == "inbox.counts_changed"]
        assert counts == [{"unseen": 1, "unread": 1, "marked_all": None}]
    assert laptop.seen == phone.seen
    (mail,) = services_hub.sink.messages
    assert mail["to"] == [owner.email]
    (telegram,) = services_hub.telegram.requests
    assert telegram["json"]["chat_id"] == "4242"
    (message,) = owner_api.get("/inbox/").json()["results"]
    assert message["id"] == created["data"]["id"]

    # Read all on the laptop: the phone's badge follows, no one else hears of it.
    r = owner_api.post("/inbox/read-all/", json={"up_to": message["id"]})
    assert r.json() == {"updated": 1, "unseen": 0, "unread": 0}
    (marked,) = phone.take(1)
    assert marked["type"] == "inbox.counts_changed"
    assert (marked["data"]["unseen"], marked["data"]["unread"]) == (0, 0)
    assert marked["data"]["marked_all"]["state"] == "read" and marked["data"]["marked_all"]["up_to"] == message["id"]
    assert laptop.take(1) == [marked]
    assert [e for e in theirs.sync() if e["type"].startswith("inbox.")] == []
    assert theirs.seen == []
    assert api_client(url, other_key).get("/inbox/").json()["results"] == []
