"""The OpenAPI document against the hub it describes: Schemathesis sends
generated requests, valid and invalid, to a running hub (embedded or services,
as the environment gives) with a user's token and a staff token, and finds no
server error and no answer the document does not describe."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import api_client, token_for
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
SECONDS_PER_TOKEN = 35


def schemathesis(url, token, report_dir):
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", CONFIG, "--no-color"),
        *("run", f"{url}/api/schema.json", "--header", f"Authorization: Token {token}"),
        # Signing out would end the run's token.
        *("--exclude-path", "/api/v1/auth/logout/"),
        *("--seed", "14", "--max-examples", "20", "--max-time", str(SECONDS_PER_TOKEN)),
        # One worker: Python 3.11's parser is not safe for the threads of several.
        *("--workers", "1", "--generation-database", "none", "--report-dir", report_dir),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=SECONDS_PER_TOKEN + 60)


def test_the_api_is_what_its_schema_says(hub, tmp_path):
    user, staff = UserFactory(), StaffFactory()
    user_token = token_for(hub.url, user)
    # Something to read: an order of the user's, its customer and its notifications.
    r = api_client(hub.url, user_token).post("/orders/", json={"total_amount": "149.99"})
    assert r.status_code == 201, r.text

    for name, token in [("user", user_token), ("staff", token_for(hub.url, staff))]:
        done = schemathesis(hub.url, token, tmp_path / name)
        assert done.returncode == 0, f"Schemathesis with the {name}'s token:\n{done.stdout}{done.stderr}"
