import dramatiq
import pytest

import notify.tasks  # noqa: F401  declares the queues


@pytest.fixture(autouse=True)
def empty_queues():
    """Each test starts and ends with nothing on the broker (in memory, or Redis in CI)."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()
