import io
import json

import pytest
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from core.db import db_retry_once
from core.exceptions import json_server_error
from core.input import JSONParser, RequestTooLarge
from notify.models import Notification
from orders import selectors as order_selectors
from orders.models import Customer


def test_malformed_json_is_a_400_parse_error(user_client):
    r = user_client.post("/api/v1/customers/", "{not json", content_type="application/json")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "parse_error"


def test_a_json_list_where_an_object_belongs_is_a_400(user_client):
    r = user_client.post("/api/v1/customers/", [1, 2], format="json")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "validation_error"


def test_form_encoded_body_is_a_415(user_client):
    r = user_client.post("/api/v1/customers/", "name=x", content_type="application/x-www-form-urlencoded")

    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"


def test_wrong_method_is_a_405(user_client):
    r = user_client.delete("/api/v1/auth/token/check/")

    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_unknown_url_is_a_json_404(client):
    r = client.get("/api/v1/no-such-thing/")

    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not found."}}


@pytest.mark.django_db
def test_a_page_past_the_last_is_a_404(user_client):
    r = user_client.get("/api/v1/orders/?page=999")

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["page=0", "page=abc", "page=last", "page_size=0", "page_size=101", "page_size=%7B%7D", "page_size=2.5"]
)
def test_a_page_or_page_size_that_is_not_a_positive_integer_is_a_400(user_client, query):
    r = user_client.get(f"/api/v1/orders/?{query}")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "validation_error"
    assert list(r.json()["error"]["fields"]) == [query.split("=")[0]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/orders/?page_sise=5", "/api/v1/notifications/stats/?page=1", "/api/v1/customers/1/?name=x"]
)
def test_an_unknown_query_parameter_is_a_400(user_client, path):
    r = user_client.get(path)

    assert r.status_code == 400
    assert r.json()["error"]["fields"] == {path.split("?")[1].split("=")[0]: ["Unknown query parameter."]}


@pytest.mark.django_db
@pytest.mark.parametrize("ordering", ["-nope", "status,", "", " status"])
def test_an_ordering_by_an_unknown_field_is_a_400(user_client, ordering):
    r = user_client.get("/api/v1/orders/", {"ordering": ordering})

    assert r.status_code == 400
    assert list(r.json()["error"]["fields"]) == ["ordering"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["customer=1.5", "customer=0", "customer=99999999999999999999"])
def test_an_id_filter_takes_a_positive_integer(user_client, query):
    assert user_client.get(f"/api/v1/orders/?{query}").status_code == 400


def test_server_error_is_json():
    response = json_server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"


# Bad input of every kind is a 4xx in the one error shape, and changes nothing.


def _nested(depth):
    return '{"name": "x", "email": "x@example.com", "address": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
def test_json_nested_too_deep_is_a_400_parse_error(user_client, depth):
    r = user_client.post("/api/v1/customers/", _nested(depth), content_type="application/json")

    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "parse_error"
    assert "nested deeper than 32" in error["message"]
    assert not Customer.objects.exists()


def test_json_nested_within_the_bound_is_parsed(user_client):
    r = user_client.post("/api/v1/customers/", _nested(30), content_type="application/json")

    assert r.status_code == 400  # parsed, then refused field by field
    assert r.json()["error"]["code"] == "validation_error"
    assert "address" in r.json()["error"]["fields"]


@pytest.mark.parametrize("megabytes", [10, 50])
def test_a_body_over_the_limit_is_a_413_with_the_limit(user_client, settings, megabytes):
    body = json.dumps({"title": "t", "message": "x" * (megabytes << 20), "recipient_type": "email"})

    r = user_client.post("/api/v1/notifications/send/", body, content_type="application/json")

    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["limit_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert not Notification.objects.exists()


def test_the_parser_reads_no_more_than_the_limit(settings):
    """Whatever the headers said, the parser itself stops at the limit."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"name": "x" * 2_000}).encode()

    with pytest.raises(RequestTooLarge):
        JSONParser().parse(io.BytesIO(body))
    at_the_limit = json.dumps({"name": "x" * 988}).encode()
    assert len(at_the_limit) == 1_000
    assert JSONParser().parse(io.BytesIO(at_the_limit)) == {"name": "x" * 988}


def test_a_bulk_of_100000_is_refused_in_json(staff_client):
    item = {"title": "t", "message": "m", "recipient_type": "email", "recipient": "a@example.com"}

    r = staff_client.post("/api/v1/notifications/bulk/", {"notifications": [item] * 100_000}, format="json")

    assert r.status_code in (400, 413)
    assert r.json()["error"]["code"] in ("validation_error", "request_too_large")
    assert not Notification.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/notifications/", "/api/v1/notifications/stats/"])
@pytest.mark.parametrize("offset", ["+16:00", "-16:00", "+14:01", "-12:01", "+99:00"])
def test_a_utc_offset_out_of_range_is_a_400(staff_client, path, offset):
    r = staff_client.get(path, {"created_after": f"2026-01-01T00:00:00{offset}"})

    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert "created_after" in error["fields"]


@pytest.mark.parametrize("offset", ["+14:00", "-12:00", "+05:30", "Z"])
def test_a_utc_offset_in_range_is_taken(staff_client, offset):
    r = staff_client.get("/api/v1/orders/", {"created_after": f"2026-01-01T00:00:00{offset}"})

    assert r.status_code == 200


@pytest.mark.parametrize("title", ["Hello\r\nBcc: victim@example.com", "line\nbreak", "carriage\rreturn", "nul\x00"])
def test_header_unsafe_characters_in_a_title_are_refused(user_client, title):
    body = {"title": title, "message": "m", "recipient_type": "email", "recipient": "a@example.com"}

    r = user_client.post("/api/v1/notifications/send/", body, format="json")

    assert r.status_code == 400
    assert "title" in r.json()["error"]["fields"]
    assert not Notification.objects.exists()


def test_header_unsafe_characters_in_a_bulk_item_are_refused(staff_client):
    item = {"title": "t\r\nX-Evil: 1", "message": "m", "recipient_type": "email", "recipient": "a@example.com"}

    r = staff_client.post("/api/v1/notifications/bulk/", {"notifications": [item]}, format="json")

    assert r.status_code == 400
    assert "notifications[0].title" in r.json()["error"]["fields"]


def test_a_request_whose_database_connection_dies_is_a_503_with_retry_after(user_client, monkeypatch):
    def dropped(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(order_selectors, "order_list", dropped)

    r = user_client.get("/api/v1/orders/")

    assert r.status_code == 503
    assert r["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "database_unavailable"


def test_work_outside_a_request_runs_once_more_when_its_connection_dropped():
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return value * 2

    assert db_retry_once(flaky, 21) == 42
    assert calls == [21, 21]


def test_work_that_fails_twice_raises():
    def broken():
        raise InterfaceError("connection already closed")

    with pytest.raises(InterfaceError):
        db_retry_once(broken)


def test_an_unknown_field_is_reported_with_the_other_errors(user_client):
    r = user_client.post("/api/v1/customers/", {"name": "x", "email": "bad", "foo": 1}, format="json")

    assert r.status_code == 400
    fields = r.json()["error"]["fields"]
    assert fields["foo"] == ["Unknown field."]
    assert "email" in fields
    assert not Customer.objects.exists()
