"""Configuration comes from the environment alone; each case starts a fresh interpreter."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = ["DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "TOKEN_TTL_HOURS"]
PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "cache": settings.CACHES["default"]["BACKEND"],
    "redis_url": settings.REDIS_URL,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "token_ttl_seconds": settings.TOKEN_TTL.total_seconds(),
}))
"""


def _settings_with(**env):
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
    )
    return done


def test_settings_default_to_embedded_mode():
    done = _settings_with(DEBUG="1")

    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(ROOT / "db.sqlite3")
    assert values["cache"].endswith("LocMemCache")
    assert values["redis_url"] == ""
    assert values["token_ttl_seconds"] == 24 * 3600
    assert values["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]


def test_settings_need_a_secret_key_when_debug_is_off():
    done = _settings_with(DEBUG="0")

    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr and "required when DEBUG is off" in done.stderr


@pytest.mark.parametrize("name", ["HTTP_THREADS", "REALTIME_SOCKET_BUFFER_BYTES"])
def test_settings_refuse_a_limit_below_one(name):
    done = _settings_with(DEBUG="1", **{name: "0"})

    assert done.returncode != 0
    assert f"{name} must be at least 1" in done.stderr


def test_settings_read_services_and_limits_from_the_environment():
    done = _settings_with(
        SECRET_KEY="s3cret",
        DATABASE_URL="postgres://hub:pw@db.internal:5433/hub",
        REDIS_URL="redis://cache.internal:6379/2",
        ALLOWED_HOSTS="hub.example.com,api.example.com",
        TOKEN_TTL_HOURS="2",
    )

    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["debug"] is False
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "hub"
    assert values["cache"].endswith("RedisCache")
    assert values["redis_url"] == "redis://cache.internal:6379/2"
    assert values["allowed_hosts"] == ["hub.example.com", "api.example.com"]
    assert values["token_ttl_seconds"] == 2 * 3600


def test_env_example_lists_every_variable_the_settings_read():
    settings_source = (ROOT / "project" / "settings.py").read_text()
    example = (ROOT / ".env.example").read_text()

    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', settings_source))
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", example, flags=re.M))
    assert read, "no variables found in settings"
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"
