# Committed notifications are enqueued, on Redis in CI: each test starts and ends with none.
from tests.notify.conftest import empty_queues  # noqa: F401  (autouse)
