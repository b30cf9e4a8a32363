import time

import pytest

from notify.heartbeat import _local_beats, heartbeat_beat

HEALTH = "/api/v1/health/"
REDIS_HEALTH = "/health/redis/"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.django_db
def test_health_reports_database_and_worker_to_staff(staff_client, settings):
    settings.REDIS_URL = ""
    heartbeat_beat("embedded-worker")

    r = staff_client.get(HEALTH)

    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "mode": "embedded",
        "components": {"database": {"ok": True}, "worker": {"ok": True}},
    }


@pytest.mark.django_db
def test_health_is_503_without_a_live_worker(staff_client, settings):
    settings.REDIS_URL = ""

    r = staff_client.get(HEALTH)

    assert r.status_code == 503
    assert r.json()["components"]["worker"] == {"ok": False, "reason": "no worker has sent a heartbeat in 30 s"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", [HEALTH, REDIS_HEALTH, "/health/worker/", "/health/celery/"])
@pytest.mark.parametrize("caller", ["anon_client", "user_client"])
def test_health_shows_others_than_staff_the_bare_status(request, settings, caller, path):
    """Reasons name hosts, workers name pids, queues tell the load: not for everyone."""
    settings.REDIS_URL = NOWHERE

    r = request.getfixturevalue(caller).get(path)

    assert r.status_code == 503
    assert r.json() == {"status": "unhealthy"}


@pytest.mark.django_db
def test_health_takes_a_bad_token_for_no_token(anon_client, worker_beating):
    anon_client.credentials(HTTP_AUTHORIZATION="Token bogus")

    r = anon_client.get(HEALTH)

    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.django_db
def test_health_reports_redis_when_configured(staff_client, redis_url, worker_beating):
    r = staff_client.get(HEALTH)

    assert r.status_code == 200
    assert r.json()["mode"] == "services"
    assert r.json()["components"]["redis"] == {"ok": True}


@pytest.mark.django_db
def test_health_is_503_when_redis_is_down(staff_client, settings):
    settings.REDIS_URL = NOWHERE

    r = staff_client.get(HEALTH)

    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    assert r.json()["components"]["redis"]["ok"] is False
    assert "redis unreachable" in r.json()["components"]["redis"]["reason"]


def test_redis_health_says_not_configured_in_embedded_mode(anon_client, settings):
    settings.REDIS_URL = ""

    r = anon_client.get(REDIS_HEALTH)

    assert r.status_code == 200
    assert r.json()["status"] == "not_configured"


def test_redis_health_is_ok_with_a_live_redis(anon_client, redis_url):
    r = anon_client.get(REDIS_HEALTH)

    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_redis_health_is_503_with_the_reason_when_down(staff_client, settings):
    settings.REDIS_URL = NOWHERE

    r = staff_client.get(REDIS_HEALTH)

    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    assert "Connection refused" in r.json()["reason"]


@pytest.fixture(autouse=True)
def _no_local_beats():
    _local_beats.clear()
    yield
    _local_beats.clear()


@pytest.mark.parametrize("path", ["/health/worker/", "/health/celery/"])
def test_worker_health_reports_heartbeats_and_queue_depths(staff_client, settings, path):
    settings.REDIS_URL = ""
    heartbeat_beat("host:123")

    r = staff_client.get(path)

    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert list(body["workers"]) == ["host:123"]
    assert 0 <= body["last_heartbeat_seconds_ago"] < 5
    assert set(body["queues"]) == {"notify", "notify.DQ", "notify_urgent", "notify_urgent.DQ"}


def test_worker_health_is_503_when_no_worker_beat_recently(staff_client, settings):
    settings.REDIS_URL = ""
    _local_beats["host:1"] = time.time() - 31

    r = staff_client.get("/health/worker/")

    assert r.status_code == 503
    assert r.json()["workers"] == {}
    assert r.json()["reason"] == "no worker has sent a heartbeat in 30 s"


def test_worker_health_reads_beats_from_redis(staff_client, redis_url):
    from notify import heartbeat

    heartbeat._redis().delete(heartbeat._KEY)
    heartbeat_beat("other-host:7")  # as a worker process on another machine would

    r = staff_client.get("/health/worker/")

    assert r.status_code == 200
    assert list(r.json()["workers"]) == ["other-host:7"]
    heartbeat._redis().delete(heartbeat._KEY)
