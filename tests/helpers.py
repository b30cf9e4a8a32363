"""Payloads from the seed's API flow, assertions shared by the API tests, and the Procfile."""

import re
from pathlib import Path

# demo_script.py sends the seed's payloads; the tests use the same ones.
from demo_script import (  # noqa: F401
    SEED_BULK,
    SEED_CUSTOMER,
    SEED_ORDER,
    SEED_PREFERENCES,
    SEED_SEND,
    SEED_SHIP,
    SEED_USER,
)
from realtime.relay import relay_drain


def assert_validation_error(response, *fields):
    """400 in the API's error shape, naming exactly `fields`."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert isinstance(error["message"], str) and error["message"]
    assert set(error["fields"]) == set(fields)
    for messages in error["fields"].values():
        assert isinstance(messages, list) and messages
    return error


def procfile_entries():
    """{process: command} of the Procfile, the commands `make run` starts."""
    entries = {}
    for line in (Path(__file__).resolve().parents[1] / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def verification_code(text):
    """The code in a verification mail's text, as a person would copy it."""
    match = re.search(r'\{"code": "([A-Za-z0-9_-]+)"\}', text)
    assert match, text
    return match.group(1)


def relayed():
    """Move the events written so far into the log, as the relay does once
    they commit (a test's transaction never commits)."""
    relay_drain()
