"""The hub's logs: request ids, the line per HTTP request, the formats and the
redaction of secrets."""

import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from django.test import Client

from core.logs import (
    REDACTED,
    RedactSecretsFilter,
    RequestIdFilter,
    json_formatter,
    request_id_bound,
    text_formatter,
)

ROOT = Path(__file__).resolve().parents[2]
NEW_ID = re.compile(r"[0-9a-f]{32}")


def _request_lines(caplog):
    return [r for r in caplog.records if r.name == "hub.request"]


def _lines(formatter, *filters):
    """A logger writing through `formatter` and `filters` to a buffer, and the
    function that returns the lines written so far."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    for log_filter in filters:
        handler.addFilter(log_filter)
    logger = logging.getLogger("tests.core.test_logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, lambda: stream.getvalue().splitlines()


# ---- the line per request -------------------------------------------------------------------


def test_request_log_line_has_the_request_fields(user, user_client, caplog):
    caplog.set_level(logging.INFO, logger="hub.request")

    response = user_client.get("/api/v1/notifications/?status=sent&channel=email")

    assert response.status_code == 200
    (line,) = _request_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == "GET /api/v1/notifications/ 200"
    assert (line.method, line.path, line.view, line.status) == (
        "GET",
        "/api/v1/notifications/",
        "notification-list",
        200,
    )
    assert line.user_id == user.pk
    assert line.client == "127.0.0.1"
    assert isinstance(line.duration_ms, float) and line.duration_ms >= 0
    assert NEW_ID.fullmatch(response["X-Request-ID"])
    assert line.request_id == response["X-Request-ID"]


def test_request_log_line_leaves_out_the_query_string(user_client, caplog):
    caplog.set_level(logging.INFO, logger="hub.request")

    user_client.get("/api/v1/notifications/?status=sent&ticket=query-secret-value")

    (line,) = _request_lines(caplog)
    formatted = json_formatter().format(line)
    assert "query-secret-value" not in formatted and "ticket" not in formatted
    assert json.loads(formatted)["path"] == "/api/v1/notifications/"


def test_request_log_line_for_an_anonymous_request_to_no_view(anon_client, caplog):
    caplog.set_level(logging.INFO, logger="hub.request")

    response = anon_client.get("/no/such/page/")

    assert response.status_code == 404
    (line,) = _request_lines(caplog)
    assert (line.status, line.view, line.user_id) == (404, "unmatched", None)


def test_request_log_line_for_a_refused_token_has_no_user(db, anon_client, caplog):
    caplog.set_level(logging.INFO, logger="hub.request")

    response = anon_client.get("/api/v1/notifications/", HTTP_AUTHORIZATION="Token not-a-real-token")

    assert response.status_code == 401
    (line,) = _request_lines(caplog)
    assert (line.status, line.user_id, line.view) == (401, None, "notification-list")
    assert "not-a-real-token" not in json_formatter().format(line)


def test_request_log_line_costs_no_query_for_a_user_nobody_looked_at(user, caplog, django_assert_num_queries):
    caplog.set_level(logging.INFO, logger="hub.request")
    client = Client()
    client.force_login(user)  # a session whose user only a query would load

    with django_assert_num_queries(0):
        response = client.get("/no/such/page/")

    assert response.status_code == 404
    (line,) = _request_lines(caplog)
    assert line.user_id is None


def test_request_log_line_takes_the_client_from_trusted_proxies(anon_client, settings, caplog):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    caplog.set_level(logging.INFO, logger="hub.request")

    anon_client.get("/no/such/page/", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7")

    (line,) = _request_lines(caplog)
    assert line.client == "198.51.100.7"


# ---- request ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "4f1c0a9e.trace:2_b", "x" * 128])
def test_request_id_keeps_a_sane_incoming_header(anon_client, caplog, incoming):
    caplog.set_level(logging.INFO, logger="hub.request")

    response = anon_client.get("/no/such/page/", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-ID"] == incoming
    (line,) = _request_lines(caplog)
    assert line.request_id == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 129, "two words", 'quote"d', "new\nline", "ünïcode", "a,b"])
def test_request_id_replaces_an_insane_incoming_header(anon_client, caplog, incoming):
    caplog.set_level(logging.INFO, logger="hub.request")

    response = anon_client.get("/no/such/page/", HTTP_X_REQUEST_ID=incoming)

    assert NEW_ID.fullmatch(response["X-Request-ID"])
    (line,) = _request_lines(caplog)
    assert line.request_id == response["X-Request-ID"]


def test_request_id_is_new_for_each_request(anon_client):
    first = anon_client.get("/no/such/page/")["X-Request-ID"]
    second = anon_client.get("/no/such/page/")["X-Request-ID"]

    assert first != second


# ---- filters and formats -----------------------------------------------------------------------


def test_request_id_filter_adds_the_bound_id_to_every_record():
    logger, lines = _lines(json_formatter(), RequestIdFilter())

    with request_id_bound("req-7"):
        logger.info("inside")
    logger.info("outside")

    inside, outside = map(json.loads, lines())
    assert inside["request_id"] == "req-7"
    assert "request_id" not in outside


def test_json_formatter_writes_one_object_per_line():
    logger, lines = _lines(json_formatter())

    logger.warning("two\nlines %s", "here", extra={"notification_id": 3, "detail": {"a": [1, 2]}})
    try:
        raise ValueError("broken")
    except ValueError:
        logger.exception("failed")

    first, second = (json.loads(line) for line in lines())
    assert list(first)[:4] == ["timestamp", "level", "logger", "message"]
    assert (first["level"], first["logger"], first["message"]) == ("WARNING", "tests.core.test_logs", "two\nlines here")
    assert first["notification_id"] == 3 and first["detail"] == {"a": [1, 2]}
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() is not None
    assert second["level"] == "ERROR" and "ValueError: broken" in second["exc_info"]


def test_json_formatter_leaves_out_the_request_object_django_attaches(rf):
    logger, lines = _lines(json_formatter())
    request = rf.get("/path/?token=query-secret-value")

    logger.error("Internal Server Error: %s", request.path, extra={"status_code": 500, "request": request})

    (line,) = lines()
    assert "query-secret-value" not in line
    assert json.loads(line)["status_code"] == 500


def test_text_formatter_puts_the_extra_fields_after_the_message():
    logger, lines = _lines(text_formatter(), RequestIdFilter())

    with request_id_bound("req-8"):
        logger.info("GET /x/ %s", 200, extra={"status": 200})

    (line,) = lines()
    assert line.endswith(" INFO tests.core.test_logs GET /x/ 200 status=200 request_id=req-8")


def test_redact_filter_replaces_configured_secrets_everywhere(settings):
    settings.TELEGRAM_BOT_TOKEN = "123456:bot-token-under-test"
    settings.EMAIL_HOST_PASSWORD = "smtp pass/word"
    logger, lines = _lines(json_formatter(), RedactSecretsFilter())
    url = f"https://api.example/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage"

    logger.info("calling %s", url, extra={"config": {"url": "smtp://hub:smtp%20pass%2Fword@mail"}})
    logger.info("key %s", settings.SECRET_KEY)
    try:
        raise RuntimeError(f"refused with {settings.EMAIL_HOST_PASSWORD}")
    except RuntimeError:
        logger.exception("failed", stack_info=True)

    output = "\n".join(lines())
    for secret in ("bot-token-under-test", "smtp pass/word", "smtp%20pass%2Fword", settings.SECRET_KEY):
        assert secret not in output
    called, key, failed = (json.loads(line) for line in lines())
    assert called["message"] == f"calling https://api.example/bot{REDACTED}/sendMessage"
    assert called["config"] == {"url": f"smtp://hub:{REDACTED}@mail"}
    assert key["message"] == f"key {REDACTED}"
    assert f"RuntimeError: refused with {REDACTED}" in failed["exc_info"]


def test_redact_filter_leaves_records_without_secrets_alone(settings):
    settings.TELEGRAM_BOT_TOKEN = "123456:bot-token-under-test"
    logger, lines = _lines(json_formatter(), RedactSecretsFilter())

    logger.info("%d%% done for %s", 50, "ann", extra={"count": 2})

    (line,) = map(json.loads, lines())
    assert (line["message"], line["count"]) == ("50% done for ann", 2)


# ---- the switch, as a fresh process configures it ----------------------------------------------

LOG_SOME_LINES = """
import logging, django
django.setup()
from django.conf import settings
from core.logs import request_id_bound
with request_id_bound("req-switch"):
    logging.getLogger("hub.check").info("key is %s", settings.SECRET_KEY, extra={"count": 2})
"""


def _log_some_lines(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-c", LOG_SOME_LINES],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "project.settings", "SECRET_KEY": "switch-secret-key", **env},
        capture_output=True,
        text=True,
    )


def test_log_format_is_json_by_default_in_production():
    done = _log_some_lines(DEBUG="0")

    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(line) for line in done.stderr.splitlines() if '"hub.check"' in line]
    assert line["message"] == f"key is {REDACTED}"
    assert (line["level"], line["count"], line["request_id"]) == ("INFO", 2, "req-switch")
    assert "switch-secret-key" not in done.stderr + done.stdout


def test_log_format_is_text_by_default_with_debug_on():
    done = _log_some_lines(DEBUG="1")

    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if " hub.check " in line]
    assert line.endswith(f" INFO hub.check key is {REDACTED} count=2 request_id=req-switch")


@pytest.mark.parametrize(("debug", "chosen", "is_json"), [("1", "json", True), ("0", "text", False)])
def test_log_format_follows_log_format(debug, chosen, is_json):
    done = _log_some_lines(DEBUG=debug, LOG_FORMAT=chosen)

    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "hub.check" in line]
    assert line.startswith("{") is is_json


def test_log_format_refuses_an_unknown_format():
    done = _log_some_lines(DEBUG="0", LOG_FORMAT="xml")

    assert done.returncode != 0
    assert "LOG_FORMAT must be json or text" in done.stderr


@pytest.mark.django_db
def test_an_unknown_path_is_logged_and_counted_as_unmatched(client, caplog, metrics_store):
    caplog.set_level(logging.INFO, logger="hub.request")

    assert client.get("/no/such/page/").status_code == 404

    (line,) = _request_lines(caplog)
    assert line.view == "unmatched"
    assert b'hub_http_requests_total{method="GET",status="404",view="unmatched"}' in metrics_store.exposition()


@pytest.mark.django_db
def test_the_favicon_is_the_dashboard_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"].endswith("/frontend/icon.svg")
