"""The sweeper's loop leaves a heartbeat for each round it completes."""

import threading

import pytest

from notify import heartbeat, sweeper


@pytest.fixture(autouse=True)
def no_sweeper_beats(settings):
    def clear():
        heartbeat._local_sweeper_beats.clear()
        if settings.REDIS_URL:
            heartbeat._redis().delete(heartbeat._SWEEPER_KEY)

    clear()
    yield
    clear()


def _one_round(monkeypatch, sweep):
    """Run sweeper_loop for exactly one round, whose sweep is `sweep`."""
    stop = threading.Event()

    def sweep_then_stop():
        stop.set()
        sweep()

    monkeypatch.setattr(sweeper, "notifications_sweep", sweep_then_stop)
    sweeper.sweeper_loop(stop)


# The loop closes old connections first, which would close the connection
# holding a test's wrapping transaction: these tests commit for real.


@pytest.mark.django_db(transaction=True)
def test_sweeper_loop_beats_after_a_completed_round(monkeypatch):
    _one_round(monkeypatch, sweeper.notifications_sweep)

    assert list(heartbeat.sweeper_beats_recent()) == [heartbeat.process_id()]


@pytest.mark.django_db(transaction=True)
def test_sweeper_loop_does_not_beat_when_a_round_fails(monkeypatch):
    def broken():
        raise RuntimeError("database is down")

    _one_round(monkeypatch, broken)

    assert heartbeat.sweeper_beats_recent() == {}


def test_sweeper_heartbeat_timeout_covers_a_few_rounds(settings):
    settings.NOTIFY_SWEEP_INTERVAL_SECONDS = 60
    assert heartbeat.sweeper_heartbeat_timeout() == 180

    settings.NOTIFY_SWEEP_INTERVAL_SECONDS = 1
    assert heartbeat.sweeper_heartbeat_timeout() == settings.WORKER_HEARTBEAT_TIMEOUT_SECONDS
