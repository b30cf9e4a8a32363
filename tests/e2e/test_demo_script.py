"""demo_script.py run as a presenter runs it: a separate process against real hub processes."""

import os
import re
import subprocess
import sys

import pytest

import demo_script
from tests.e2e.conftest import ROOT
from tests.fakes import free_port

pytestmark = pytest.mark.e2e

RUN_TIMEOUT_SECONDS = 180
# The seed's requests in order: method, path (a pattern), status code.
SEED_STEPS = [
    ("GET", r"/api/v1/health/", 200),
    ("POST", r"/api/v1/auth/register/", 201),
    ("POST", r"/api/v1/auth/token/", 200),
    ("POST", r"/api/v1/auth/token/", 200),
    ("GET", r"/api/v1/auth/token/check/", 200),
    ("GET", r"/api/v1/auth/token/check/", 200),
    ("POST", r"/api/v1/customers/", 201),
    ("GET", r"/api/v1/customers/", 200),
    ("GET", r"/api/v1/customers/\d+/", 200),
    ("PATCH", r"/api/v1/customers/\d+/", 200),
    ("POST", r"/api/v1/orders/", 201),
    ("PUT", r"/api/v1/orders/\d+/status/", 200),
    ("PUT", r"/api/v1/orders/\d+/", 200),
    ("PATCH", r"/api/v1/orders/\d+/", 200),
    ("GET", r"/api/v1/orders/", 200),
    ("GET", r"/api/v1/orders/\d+/", 200),
    ("DELETE", r"/api/v1/orders/\d+/", 204),
    ("POST", r"/api/v1/notifications/send/", 202),
    ("POST", r"/api/v1/notifications/bulk/", 202),
    ("GET", r"/api/v1/notifications/", 200),
    ("GET", r"/api/v1/notifications/stats/", 200),
    ("GET", r"/api/v1/notifications/\d+/", 200),
    ("GET", r"/api/v1/customers/\d+/preferences/", 200),
    ("PATCH", r"/api/v1/customers/\d+/preferences/", 200),
    ("GET", r"/api/v1/health/", 200),
    ("GET", r"/api/v1/health/", 200),
    ("GET", r"/health/redis/", 200),
    ("GET", r"/health/celery/", 200),
    ("GET", r"/health/celery/", 200),
    ("POST", r"/api/v1/auth/logout/", 204),
    ("POST", r"/api/v1/auth/logout/", 204),
]
STEP_LINE = re.compile(r"^\s*\d+\s+.+?\s(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)\s+(\d{3})\b", re.MULTILINE)


def _run(*args):
    # The script reads HUB_* for its defaults; the tests say everything themselves.
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "demo_script.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )


def _assert_seed_steps(stdout, *, registered):
    steps = [(method, path, int(status)) for method, path, status in STEP_LINE.findall(stdout)]
    expected = list(SEED_STEPS)
    if not registered:
        expected[1] = ("POST", r"/api/v1/auth/register/", 400)  # demo_user exists: the script signs in instead
    assert len(steps) == len(expected), stdout
    for (method, path, status), (want_method, want_path, want_status) in zip(steps, expected, strict=True):
        assert (method, status) == (want_method, want_status), stdout
        assert re.fullmatch(want_path, path), stdout


def _assert_succeeded(done):
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "result:        OK" in done.stdout


def _subjects(sink):
    return [(tuple(m["to"]), str(m["message"]["Subject"])) for m in sink.messages]


def test_demo_script_runs_the_seed_flow_twice_in_services_mode(services_hub):
    first = _run(services_hub.url, "--run-id", "t1", "--wait", "60")

    _assert_succeeded(first)
    _assert_seed_steps(first.stdout, registered=True)
    assert re.search(r"event #\d+\s+order\.created\s+ORD-001-t1: pending", first.stdout), first.stdout
    assert re.search(r"event #\d+\s+order\.status_changed\s+ORD-001-t1: pending -> confirmed", first.stdout)
    assert re.search(r"event #\d+\s+order\.deleted\s+ORD-001-t1", first.stdout)
    assert re.search(
        r"event #\d+\s+notification\.status_changed\s+#\d+ email to demo@example\.com: sending -> sent", first.stdout
    )
    assert re.search(
        r"event #\d+\s+notification\.status_changed\s+#\d+ telegram to 123456789: sending -> sent", first.stdout
    )
    assert "services mode" in first.stdout
    assert re.search(r"GET\s+/health/redis/\s+200\s+ok$", first.stdout, re.MULTILINE)
    subjects = _subjects(services_hub.sink)
    assert (("demo@example.com",), "Demo Notification") in subjects
    assert (("user1@example.com",), "Bulk Notification 1") in subjects
    for status in ("received", "is confirmed", "is shipped", "is delivered"):
        assert (("demo@example.com",), f"Order ORD-001-t1 {status}") in subjects
    assert any("Bulk Notification 2" in text for text in services_hub.telegram.sent_texts())

    # The same hub again: demo_user exists, and the run's own order number,
    # customer email and tracking number keep it from clashing with the first.
    second = _run(services_hub.url, "--run-id", "t2", "--wait", "60")

    _assert_succeeded(second)
    _assert_seed_steps(second.stdout, registered=False)
    assert re.search(r"event #\d+\s+order\.created\s+ORD-001-t2: pending", second.stdout), second.stdout
    assert (("demo@example.com",), "Order ORD-001-t2 is delivered") in _subjects(services_hub.sink)


def test_demo_script_follows_events_with_a_ticket(services_hub):
    done = _run(services_hub.url, "--run-id", "t3", "--socket-auth", "ticket")

    _assert_succeeded(done)
    assert re.search(r"POST\s+/api/v1/realtime/ticket/\s+201\b", done.stdout), done.stdout
    assert re.search(r"event #\d+\s+order\.status_changed\s+ORD-001-t3: confirmed -> shipped", done.stdout)


def test_demo_script_runs_the_seed_flow_against_the_hub_of_this_mode(hub):
    done = _run(hub.url, "--run-id", "e1")

    _assert_succeeded(done)
    _assert_seed_steps(done.stdout, registered=True)
    # Embedded mode has no Redis, and says so with a 200.
    redis_status = "ok" if hub.env.get("REDIS_URL") else "not_configured"
    assert re.search(rf"GET\s+/health/redis/\s+200\s+{redis_status}$", done.stdout, re.MULTILINE), done.stdout
    assert re.search(
        r"event #\d+\s+notification\.status_changed\s+#\d+ email to demo@example\.com: sending -> sent", done.stdout
    )


def test_demo_script_fails_naming_the_step_when_the_admin_password_is_wrong(hub):
    done = _run(hub.url, "--admin-password", "not-the-password")

    assert done.returncode == 1
    assert "FAILED: step 4 (Token for krushnappan: POST /api/v1/auth/token/) answered 400" in done.stderr
    assert "invalid_credentials" in done.stderr and "--admin-password" in done.stderr
    assert "Summary" not in done.stdout


def test_demo_script_fails_when_the_hub_refuses_the_socket(hub, monkeypatch, capsys):
    # A ticket the hub never issued: the handshake is refused as any bad credentials are.
    real_socket_url = demo_script.socket_url
    monkeypatch.setattr(
        demo_script,
        "socket_url",
        lambda base, query=None: real_socket_url(base, query and {**query, "ticket": "forged"}),
    )

    code = demo_script.main([hub.url, "--socket-auth", "ticket"])

    assert code == 1
    out, err = capsys.readouterr()
    assert "FAILED: live events: the hub refused the socket" in err and "(HTTP 403)" in err
    assert "Create customer" not in out


def test_demo_script_fails_when_nothing_listens_at_the_url():
    url = f"http://127.0.0.1:{free_port()}"

    done = _run(url)

    assert done.returncode == 1
    assert f"FAILED: step 1 (System health: GET /api/v1/health/): cannot reach the hub at {url}" in done.stderr
    assert "Summary" not in done.stdout
