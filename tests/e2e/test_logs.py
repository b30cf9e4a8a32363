"""The hub's logs from real processes: the Procfile's web command (Daphne) and a
`rundramatiq` worker, in production's JSON format, on PostgreSQL and Redis.

A request's id comes back in its X-Request-ID header, marks its line and the
worker's line for each delivery it caused; no secret reaches any log file."""

import json
import re
import shlex
import sys
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from core.models import User
from notify.models import Notification, NotificationKind, NotificationStatus
from tests.conftest import TELEGRAM_TEST_TOKEN
from tests.e2e.conftest import START_TIMEOUT_SECONDS, api_client, token_for, wait_until
from tests.factories import PASSWORD, UserFactory
from tests.fakes import free_port
from tests.helpers import procfile_entries, verification_code

pytestmark = pytest.mark.e2e

PASSWORD_UNDER_TEST = "Lg-e2e-pass-4f9c!x"
QUERY_SECRET = "query-secret-value"
NEW_ID = re.compile(r"[0-9a-f]{32}")
# Runs a Procfile command as a process manager would: through the shell, which
# fills in ${VAR:-default}, then replaced by the command itself.
RUN_IN_SHELL = "import os, sys; os.execvp('sh', ['sh', '-c', 'exec ' + sys.argv[1]])"


def _start_procfile_web(hub):
    """The Procfile's web command as written, beside the fixture's own Daphne;
    returns its base URL."""
    command = procfile_entries()["web"]
    assert shlex.split(command)[0] == "daphne"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = f"{Path(sys.executable).parent}:{hub.env.get('PATH', '')}"
    process = hub.start("web-procfile", "-c", RUN_IN_SHELL, command, HOST="127.0.0.1", PORT=str(port), PATH=path)

    def answers():
        if process.poll() is not None:
            raise AssertionError(f"the Procfile's web exited with {process.returncode}:\n{hub.output('web-procfile')}")
        try:
            return httpx.get(f"{url}/api/v1/health/", timeout=1).status_code in (200, 503)
        except httpx.TransportError:
            return False

    wait_until(answers, START_TIMEOUT_SECONDS, what="the Procfile's web command to answer")
    return url


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _find(lines, **fields):
    return [line for line in lines if all(line.get(key) == value for key, value in fields.items())]


def test_logs_follow_a_request_to_its_deliveries_and_keep_secrets_out(services_hub):
    url = _start_procfile_web(services_hub)
    http = httpx.Client(base_url=f"{url}/api/v1", timeout=10)

    # Register and sign in: a password and a token cross the wire.
    user = {"username": "log_reader", "password": PASSWORD_UNDER_TEST, "email": "log.reader@example.com"}
    r = http.post("/auth/register/", json={**user, "first_name": "Log", "last_name": "Reader"})
    assert r.status_code == 201, r.text
    r = http.post("/auth/token/", json={"username": user["username"], "password": PASSWORD_UNDER_TEST})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    http.headers["Authorization"] = f"Token {token}"
    user_id = User.objects.get(username=user["username"]).pk

    # A send under the caller's request id, one under an id the hub makes.
    mail = {"title": "T", "message": "Body for the log test", "recipient_type": "email", "recipient": "a@example.com"}
    r = http.post("/notifications/send/", json=mail, headers={"X-Request-ID": "e2e-send-7"})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"] == "e2e-send-7"
    mail_id = r.json()["id"]
    chat = {"title": "T", "message": "Chat body for the log test", "recipient_type": "telegram", "recipient": "4242"}
    r = http.post("/notifications/send/", json=chat)
    assert r.status_code == 202, r.text
    chat_request_id, chat_id = r.headers["X-Request-ID"], r.json()["id"]
    assert NEW_ID.fullmatch(chat_request_id)
    # An unknown parameter is refused, and logged like any request: without its query.
    assert http.get(f"/notifications/?status=sent&probe={QUERY_SECRET}").status_code == 400

    def delivered():
        statuses = dict(Notification.objects.filter(pk__in=[mail_id, chat_id]).values_list("pk", "status"))
        return statuses == {mail_id: NotificationStatus.SENT, chat_id: NotificationStatus.SENT}

    wait_until(delivered, what="both notifications sent")

    # A socket, opened and closed under the handshake's request id.
    headers = {"Authorization": f"Token {token}", "X-Request-ID": "e2e-socket-3"}
    with connect(url.replace("http://", "ws://") + "/ws/events/", additional_headers=headers, proxy=None) as ws:
        ws.send(json.dumps({"action": "ping"}))
        while json.loads(ws.recv(timeout=10))["type"] != "pong":
            pass

    web = lambda: _json_lines(services_hub.output("web-procfile"))  # noqa: E731
    worker = lambda: _json_lines(services_hub.output("worker"))  # noqa: E731
    wait_until(lambda: _find(web(), logger="hub.socket", close_code=1000), what="the socket's close line")

    def delivery_lines():
        lines = _find(worker(), logger="hub.delivery")
        return [line for line in lines if line["notification_id"] in (mail_id, chat_id)]

    wait_until(lambda: len(delivery_lines()) == 2, what="the delivery lines")

    # The Procfile's web command writes JSON lines and nothing else: no access log of Daphne's own.
    web_text = services_hub.output("web-procfile")
    assert [line for line in web_text.splitlines() if line.strip() and not line.startswith("{")] == []

    (send_line,) = _find(web(), logger="hub.request", request_id="e2e-send-7")
    assert (send_line["method"], send_line["path"], send_line["status"]) == ("POST", "/api/v1/notifications/send/", 202)
    assert (send_line["view"], send_line["user_id"], send_line["client"]) == ("notification-send", user_id, "127.0.0.1")
    assert send_line["level"] == "INFO" and send_line["duration_ms"] >= 0 and send_line["timestamp"]
    (sign_in,) = _find(web(), logger="hub.request", path="/api/v1/auth/token/")
    assert (sign_in["status"], sign_in["user_id"]) == (200, None)
    (listed,) = _find(web(), logger="hub.request", path="/api/v1/notifications/", method="GET")
    assert listed["status"] == 400

    (mail_attempt,) = _find(worker(), logger="hub.delivery", notification_id=mail_id)
    assert (mail_attempt["request_id"], mail_attempt["outcome"], mail_attempt["attempt"]) == ("e2e-send-7", "sent", 1)
    assert mail_attempt["channel"] == "email" and mail_attempt["duration_ms"] >= 0
    (chat_attempt,) = _find(worker(), logger="hub.delivery", notification_id=chat_id)
    assert (chat_attempt["request_id"], chat_attempt["outcome"]) == (chat_request_id, "sent")
    assert _find(_json_lines(services_hub.output("worker")), message="Worker process is ready for action.")

    (opened,) = _find(web(), logger="hub.socket", request_id="e2e-socket-3", accepted=True)
    assert (opened["user_id"], opened["path"], opened["reason"]) == (user_id, "/ws/events/", None)
    (closed,) = _find(web(), logger="hub.socket", request_id="e2e-socket-3", close_code=1000)
    assert closed["user_id"] == user_id and closed["duration_ms"] >= 0

    verification = Notification.objects.get(kind=NotificationKind.EMAIL_VERIFICATION)
    code = verification_code(verification.message)
    secrets = [token, PASSWORD_UNDER_TEST, TELEGRAM_TEST_TOKEN, services_hub.env["SECRET_KEY"], QUERY_SECRET, code]
    logs = sorted(services_hub.log_dir.glob("*.log"))
    assert {log.name for log in logs} >= {"web.log", "web-procfile.log", "worker.log"}
    for log in logs:
        text = log.read_text(errors="replace")
        assert "Body for the log test" not in text and "Chat body for the log test" not in text, log.name
        for secret in secrets:
            assert secret not in text, f"{log.name} has a secret"


def test_logs_tie_a_delivery_to_its_request_in_either_mode(hub):
    """Embedded mode delivers inside the web process, services mode in the
    worker: either way the attempt's line carries the request's id."""
    api = api_client(hub.url, token_for(hub.url, UserFactory(password=PASSWORD)))
    body = {"title": "T", "message": "M", "recipient_type": "email", "recipient": "a@example.com"}

    r = api.post("/notifications/send/", json=body, headers={"X-Request-ID": "e2e-either-1"})

    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"] == "e2e-either-1"
    notification_id = r.json()["id"]

    def attempt_lines():
        names = [name for name in ("web", "worker") if (hub.log_dir / f"{name}.log").exists()]
        lines = [line for name in names for line in _json_lines(hub.output(name))]
        return _find(lines, logger="hub.delivery", notification_id=notification_id)

    (line,) = wait_until(attempt_lines, what="the delivery line")
    assert (line["request_id"], line["outcome"]) == ("e2e-either-1", "sent")
    (request_line,) = _find(_json_lines(hub.output("web")), logger="hub.request", request_id="e2e-either-1")
    assert request_line["status"] == 202
