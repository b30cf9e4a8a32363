"""The event relay end to end in services mode: two Daphne processes, one
leading; the leader killed mid-stream, the other takes over, and live and
resuming clients get every event once, in order."""

import json
import signal
import time

import pytest
from websockets.sync.client import connect

from realtime.models import Event
from tests.e2e.conftest import api_client, token_for, wait_until
from tests.factories import StaffFactory
from tests.fakes import free_port
from tests.helpers import SEED_ORDER

pytestmark = pytest.mark.e2e

LEADING = "Event relay: leading"


def _socket(url, token, query=""):
    ws = connect(
        url.replace("http://", "ws://", 1) + "/ws/events/" + query,
        additional_headers={"Authorization": f"Token {token}"},
        proxy=None,
        open_timeout=10,
    )
    ws.ping().wait(5)
    return ws


def _events(ws, until, timeout=30):
    """Events from `ws` until `until(events)` holds."""
    events, deadline = [], time.monotonic() + timeout
    while not until(events):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out with {len(events)} events: {events[-3:]}"
        message = json.loads(ws.recv(timeout=remaining))
        if message.get("id") is not None:
            events.append(message)
        else:
            assert message["type"] == "heartbeat", message
    return events


def _created(events):
    return sum(e["type"] == "order.created" for e in events)


def test_the_leader_killed_a_standby_takes_over_and_nothing_is_lost_or_repeated(services_hub):
    hub = services_hub
    second = hub.start_web(name="web2", port=free_port())
    webs = {"web": hub.url, "web2": second}
    leader = wait_until(lambda: [name for name in webs if LEADING in hub.output(name)], what="a relay to lead")
    assert len(leader) == 1, leader  # one leader between the two
    (leader,) = leader
    (survivor,) = [name for name in webs if name != leader]

    staff = StaffFactory()
    token = token_for(webs[survivor], staff)
    live = _socket(webs[survivor], token)
    with api_client(webs[survivor], token) as api:
        for i in range(5):
            assert api.post("/orders/", json={**SEED_ORDER, "order_number": f"ORD-RELAY-{i}"}).status_code == 201
        before = _events(live, lambda events: _created(events) == 5)

        hub.stop(leader, signal.SIGKILL)
        for i in range(5, 10):
            assert api.post("/orders/", json={**SEED_ORDER, "order_number": f"ORD-RELAY-{i}"}).status_code == 201

    after = _events(live, lambda events: _created(events) == 5)
    assert LEADING in hub.output(survivor)
    live.close()

    # The live socket: every event once, in id order, without a hole.
    received = before + after
    ids = [e["id"] for e in received]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    # What the log holds is what went out, in the same order.
    logged = [event.envelope() for event in Event.objects.filter(id__gte=ids[0], id__lte=ids[-1])]
    assert json.loads(json.dumps(logged)) == received

    # A client resuming from the start gets the whole log, each id once.
    resumed = _socket(webs[survivor], token, "?last_event_id=0")
    everything = Event.objects.count()
    replayed = _events(resumed, lambda events: len(events) == everything)
    resumed.close()
    assert [e["id"] for e in replayed] == list(range(1, everything + 1))
    assert {e["data"]["order_number"] for e in replayed if e["type"] == "order.created"} >= {
        f"ORD-RELAY-{i}" for i in range(10)
    }
