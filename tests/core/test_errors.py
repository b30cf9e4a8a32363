import json

import pytest
from django.test import RequestFactory

from core.exceptions import json_server_error


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
@pytest.mark.parametrize("page", ["0", "999", "abc"])
def test_a_page_out_of_range_is_a_404(user_client, page):
    r = user_client.get(f"/api/v1/orders/?page={page}")

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_server_error_is_json():
    response = json_server_error(RequestFactory().get("/"))

    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"
