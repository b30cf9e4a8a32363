"""The admin's sign-in form is held to the same throttles as the API's."""

import pytest

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def _attempt(client, username, password, address="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_admin_sign_in_stops_taking_guesses_after_the_rate(client, staff, settings):
    guesses = [_attempt(client, staff.username, f"wrong-{i}").status_code for i in range(10)]
    assert guesses == [200] * 10  # the form again, with its error

    r = _attempt(client, staff.username, PASSWORD)

    assert r.status_code == 429
    assert 0 < int(r["Retry-After"]) <= 60
    assert b"Too many sign-in attempts" in r.content
    assert "_auth_user_id" not in client.session


def test_admin_sign_in_counts_guesses_per_username_from_any_address(client, staff):
    for i in range(10):
        _attempt(client, staff.username, f"wrong-{i}", address=f"10.0.1.{i}")

    assert _attempt(client, staff.username, PASSWORD, address="10.0.2.1").status_code == 429
    # Another account from a fresh address is not held up.
    assert _attempt(client, "someone-else", "x", address="10.0.2.2").status_code == 200


def test_admin_sign_in_still_works_within_the_rate(client, staff):
    assert client.get(LOGIN).status_code == 200  # showing the form counts for nothing
    _attempt(client, staff.username, "wrong")

    r = _attempt(client, staff.username, PASSWORD)

    assert r.status_code == 302
    assert client.session["_auth_user_id"] == str(staff.pk)
