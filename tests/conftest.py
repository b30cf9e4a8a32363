import os

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from core import services as core_services
from tests.factories import PASSWORD, StaffFactory, UserFactory

REQUIRE_SERVICES = os.environ.get("HUB_REQUIRE_SERVICES") == "1"


def service_unavailable(reason):
    """Skip on a bare machine; fail where services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"HUB_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_url(settings):
    """The configured Redis, reachable; skips (or fails in CI) otherwise."""
    from core.health import redis_check

    if not settings.REDIS_URL:
        service_unavailable("REDIS_URL is not set")
    ok, reason = redis_check()
    if not ok:
        service_unavailable(reason)
    return settings.REDIS_URL


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Throttle counters live in the cache; each test starts with none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _redis_tried_afresh():
    """A Redis outage a test made does not make the next test skip Redis."""
    from core.redis import redis_optional_reset

    redis_optional_reset()
    yield
    redis_optional_reset()


@pytest.fixture(autouse=True)
def _relay_on_commit(request, monkeypatch):
    """No web server runs in this process, so no relay thread: a commit that
    wrote events relays them itself, at once. Tests marked `own_relay` keep
    the real wake-up and run the relay themselves."""
    if "own_relay" in request.keywords:
        return
    from realtime import relay, services

    monkeypatch.setattr(services, "relay_wake", relay.relay_drain)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    return StaffFactory()


def client_for(user):
    """An API client carrying a real token issued to `user`."""
    _, key = core_services.auth_token_create(username=user.username, password=PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def user_client(user):
    return client_for(user)


@pytest.fixture
def other_client(other_user):
    return client_for(other_user)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests of this process.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def metrics_store(settings):
    """An empty metrics store (Redis in services mode, memory otherwise) before and after the test."""
    from core import metrics
    from core.redis import redis_client

    url = settings.REDIS_URL  # the test may point REDIS_URL elsewhere meanwhile

    def clear():
        metrics._local.clear()
        if url:
            redis_client(url).delete(metrics.STORE_KEY, metrics.SOCKETS_KEY)

    clear()
    yield metrics
    clear()


@pytest.fixture
def worker_beating(settings):
    """A worker heartbeat, as a running worker would leave it."""
    from notify import heartbeat

    heartbeat.heartbeat_beat("test-worker")
    yield
    if settings.REDIS_URL:
        heartbeat._redis().hdel(heartbeat._KEY, "test-worker")
    heartbeat._local_beats.clear()


TELEGRAM_TEST_TOKEN = "123456:TEST-bot-token-never-logged"


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server on loopback, and the hub's mail pointed at it."""
    from tests.fakes import SmtpSink

    sink = SmtpSink().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
    settings.EMAIL_TIMEOUT = 2
    yield sink
    sink.stop()


@pytest.fixture
def telegram_api(settings):
    """A Bot API stand-in on loopback, and the hub's Telegram channel pointed at it."""
    from tests.fakes import FakeTelegram

    fake = FakeTelegram(TELEGRAM_TEST_TOKEN).start()
    settings.TELEGRAM_API_URL = fake.url
    settings.TELEGRAM_BOT_TOKEN = TELEGRAM_TEST_TOKEN
    settings.TELEGRAM_TIMEOUT = 0.5
    settings.TELEGRAM_CHAT_INTERVAL_SECONDS = 0.0
    settings.TELEGRAM_BOT_MESSAGES_PER_SECOND = 10_000
    yield fake
    fake.stop()
