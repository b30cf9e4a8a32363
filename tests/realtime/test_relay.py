"""The event relay: committed events into the log in commit order, each id
once, none lost; transactions interleaved for real on PostgreSQL, each in a
thread (and a connection) of its own."""

import queue
import threading
import time
from collections import Counter

import psycopg
import pytest
from django.db import connection, transaction

from realtime import relay
from realtime.events import EventSpec
from realtime.models import Event, PendingEvent
from realtime.services import events_record
from tests.conftest import service_unavailable
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.own_relay]


@pytest.fixture(autouse=True)
def postgresql():
    if connection.vendor != "postgresql":
        service_unavailable("transactions interleave only on PostgreSQL; DATABASE_URL does not point at it")


@pytest.fixture
def published(monkeypatch):
    """Every batch the relay hands to the fan-out, from any thread."""
    messages = []
    lock = threading.Lock()

    def publish(batch):
        with lock:
            messages.extend(batch)

    monkeypatch.setattr(relay, "events_publish", publish)
    return messages


def spec(name, audience=()):
    return EventSpec("order.created", {"name": name}, frozenset(audience))


def log():
    return list(Event.objects.order_by("id").values_list("id", "data__name"))


class Transaction:
    """A transaction in a thread of its own, moved on a step at a time."""

    def __init__(self):
        self.steps, self.results = queue.Queue(), queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with transaction.atomic():
                while (step := self.steps.get()) is not None:
                    if step == "rollback":
                        transaction.set_rollback(True)
                        break
                    self.results.put(step())
        except Exception as error:  # the test's thread reports it
            self.results.put(error)
        finally:
            connection.close()
            self.results.put("ended")

    def do(self, step):
        self.steps.put(step)
        result = self.results.get(timeout=10)
        if isinstance(result, Exception):
            raise result
        return result

    def record(self, *names):
        return self.do(lambda: events_record([spec(name) for name in names]))

    def _end(self, how):
        self.steps.put(how)
        assert self.results.get(timeout=10) == "ended"
        self.thread.join(timeout=10)

    def commit(self):
        self._end(None)

    def rollback(self):
        self._end("rollback")


def test_a_transaction_that_commits_later_comes_later_whatever_its_ids(published):
    early, late = Transaction(), Transaction()
    early.record("early")  # the lower pending id
    late.record("late")
    late.commit()

    relay.relay_drain()  # `early` is still open: it holds nothing up
    assert log() == [(1, "late")]
    early.commit()
    relay.relay_drain()

    assert log() == [(1, "late"), (2, "early")]
    assert not PendingEvent.objects.exists()
    assert [event.id for event in published] == [1, 2]


def test_a_transaction_stays_together_and_follows_what_it_saw(published):
    first, second = Transaction(), Transaction()
    first.record("first-1")
    second.record("second-1")  # before it saw anything of `first`
    first.record("first-2")
    first.commit()
    assert second.do(lambda: PendingEvent.objects.filter(data__name="first-2").exists())  # it sees `first`
    second.record("second-2")  # so what it writes now follows `first`
    second.commit()

    relay.relay_drain()  # both in one round

    assert [name for _, name in log()] == ["first-1", "first-2", "second-1", "second-2"]


def test_independent_transactions_seen_in_one_round_keep_their_events_together(published):
    one, two = Transaction(), Transaction()
    one.record("one-1")
    two.record("two-1")
    one.record("one-2")
    two.commit()
    one.commit()

    relay.relay_drain()

    names = [name for _, name in log()]
    assert names in (["one-1", "one-2", "two-1"], ["two-1", "one-1", "one-2"])
    assert [i for i, _ in log()] == [1, 2, 3]


def test_a_rolled_back_transaction_leaves_no_hole_and_holds_nothing_up(published):
    gone, kept = Transaction(), Transaction()
    gone.record("gone")
    kept.record("kept")
    gone.rollback()
    kept.commit()
    relay.relay_drain()
    with transaction.atomic():
        events_record([spec("after")])
    relay.relay_drain()

    assert log() == [(1, "kept"), (2, "after")]


def test_a_round_moves_whole_transactions_and_leaves_the_rest_for_the_next(published, monkeypatch):
    monkeypatch.setattr(relay, "BATCH", 3)
    with transaction.atomic():
        events_record([spec("a-1"), spec("a-2")])
    with transaction.atomic():
        events_record([spec("b-1"), spec("b-2")])
    with transaction.atomic():
        events_record([spec(f"big-{i}") for i in range(5)])  # more than a round takes: all at once

    assert relay.relay_round() == 2
    assert relay.relay_round() == 2
    assert relay.relay_round() == 5
    assert relay.relay_round() == 0
    assert [name for _, name in log()] == ["a-1", "a-2", "b-1", "b-2", *(f"big-{i}" for i in range(5))]


def test_an_audience_member_deleted_before_the_relay_is_left_out(published):
    stays, goes = UserFactory(), UserFactory()
    with transaction.atomic():
        events_record([spec("x", audience={stays.pk, goes.pk})])
    goes.delete()

    relay.relay_drain()

    (event,) = Event.objects.all()
    assert set(event.audience.values_list("pk", flat=True)) == {stays.pk}
    assert [event.audience for event in published] == [[stays.pk]]


def _write(n, name, errors):
    try:
        for i in range(n):
            with transaction.atomic():
                events_record([spec(f"{name}-{i}-{part}") for part in range(3)])
    except Exception as error:
        errors.append(error)
    finally:
        connection.close()


def _relay_until(stop, errors):
    try:
        while not stop.is_set():
            relay.relay_drain()
    except Exception as error:
        errors.append(error)
    finally:
        connection.close()


def test_two_relays_beside_four_writers_hand_out_each_id_once_and_lose_nothing(published):
    """Two relays that both believe they lead (the leader lock lost, say)
    still take turns, round by round."""
    errors, stop = [], threading.Event()
    relays = [threading.Thread(target=_relay_until, args=(stop, errors)) for _ in range(2)]
    writers = [threading.Thread(target=_write, args=(40, f"w{w}", errors)) for w in range(4)]
    for thread in relays + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    stop.set()
    for thread in relays:
        thread.join(timeout=30)
    relay.relay_drain()

    assert errors == []
    entries = log()
    assert [i for i, _ in entries] == list(range(1, 4 * 40 * 3 + 1))
    names = [name for _, name in entries]
    assert Counter(names) == Counter(f"w{w}-{i}-{p}" for w in range(4) for i in range(40) for p in range(3))
    for start in range(0, len(names), 3):  # each transaction's three, together and in order
        writer, i, _ = names[start].split("-")
        assert names[start : start + 3] == [f"{writer}-{i}-{p}" for p in range(3)]
    # each writer's transactions in the order it committed them
    for w in range(4):
        mine = [int(name.split("-")[1]) for name in names[::3] if name.startswith(f"w{w}-")]
        assert mine == sorted(mine)
    assert sorted(event.id for event in published) == list(range(1, len(entries) + 1))


# ---- leadership ---------------------------------------------------------------------------


def _lock_connection():
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"] or None, host=db["HOST"] or None, port=db["PORT"] or None, autocommit=True
    )


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_standby_waits_while_another_leads_and_takes_over_when_its_session_ends(published, caplog, monkeypatch):
    monkeypatch.setattr(relay, "POLL_SECONDS", 0.2)
    leader = _lock_connection()
    assert leader.execute("SELECT pg_try_advisory_lock(%s)", [relay.LEADER_LOCK]).fetchone()[0]
    stop = threading.Event()
    standby = threading.Thread(target=relay.relay_run, args=(stop,))
    standby.start()
    try:
        with transaction.atomic():
            events_record([spec("while-another-leads")])
        time.sleep(5 * relay.POLL_SECONDS)
        assert log() == []  # the standby moved nothing
        assert PendingEvent.objects.count() == 1

        leader.close()  # the leader's process ended

        assert _wait_for(lambda: log() == [(1, "while-another-leads")])
        assert "Event relay: leading" in caplog.text
        # Leading now, it is woken by each commit, not only by its poll.
        monkeypatch.setattr(relay, "POLL_SECONDS", 60)
        time.sleep(0.5)  # the wait under way ends; the next lasts a minute unless woken
        with transaction.atomic():
            events_record([spec("woken")])
        assert _wait_for(lambda: len(log()) == 2)
    finally:
        stop.set()
        relay.relay_wake()  # out of its wait, to see `stop`
        standby.join(timeout=10)
        leader.close()
    assert not standby.is_alive()
