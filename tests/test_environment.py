"""Where services are required (CI), the suite must really be running on them."""

from django.db import connection

from tests.conftest import REQUIRE_SERVICES, service_unavailable


def test_suite_runs_on_postgresql_when_services_are_required():
    if not REQUIRE_SERVICES:
        service_unavailable("HUB_REQUIRE_SERVICES is not set; the suite runs on SQLite")
    assert connection.vendor == "postgresql"


def test_suite_has_redis_when_services_are_required(redis_url):
    assert redis_url.startswith("redis://")
