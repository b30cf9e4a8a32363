import json
import re

import pytest

EXPECTED_RESPONSES = {
    ("/api/v1/auth/register/", "post"): {"201", "400", "413", "429"},
    ("/api/v1/auth/token/", "post"): {"200", "400", "413", "429"},
    ("/api/v1/auth/token/check/", "get"): {"200", "401"},
    ("/api/v1/auth/logout/", "post"): {"204", "401"},
    ("/api/v1/health/", "get"): {"200", "503"},
    ("/health/redis/", "get"): {"200", "503"},
    ("/api/v1/customers/", "get"): {"200", "400", "401", "404"},
    ("/api/v1/customers/", "post"): {"201", "400", "401", "413"},
    ("/api/v1/customers/{id}/", "get"): {"200", "400", "401", "404"},
    ("/api/v1/customers/{id}/", "put"): {"200", "400", "401", "403", "404", "413"},
    ("/api/v1/customers/{id}/", "patch"): {"200", "400", "401", "403", "404", "413"},
    ("/api/v1/customers/{id}/", "delete"): {"204", "400", "401", "403", "404", "409"},
    ("/api/v1/customers/{id}/preferences/", "get"): {"200", "401", "404"},
    ("/api/v1/customers/{id}/preferences/", "patch"): {"200", "400", "401", "404", "413"},
    ("/api/v1/orders/", "get"): {"200", "400", "401", "404"},
    ("/api/v1/orders/", "post"): {"201", "400", "401", "413"},
    ("/api/v1/orders/{id}/", "get"): {"200", "400", "401", "404"},
    ("/api/v1/orders/{id}/", "put"): {"200", "400", "401", "403", "404", "409", "413"},
    ("/api/v1/orders/{id}/", "patch"): {"200", "400", "401", "403", "404", "409", "413"},
    ("/api/v1/orders/{id}/", "delete"): {"204", "400", "401", "403", "404"},
    ("/api/v1/orders/{id}/status/", "put"): {"200", "400", "401", "403", "404", "409", "413"},
}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        r = APIClient().get("/api/schema.json")
    assert r.status_code == 200
    return r.json()


def test_schema_documents_every_endpoint_with_its_responses(schema):
    for (path, method), codes in EXPECTED_RESPONSES.items():
        operation = schema["paths"][path][method]
        assert set(operation["responses"]) == codes, (path, method)


def test_schema_documents_request_bodies(schema):
    def body_fields(path, method):
        (body,) = [p for p in schema["paths"][path][method]["parameters"] if p["in"] == "body"]
        ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
        return set(schema["definitions"][ref]["properties"])

    assert body_fields("/api/v1/orders/{id}/status/", "put") == {"status"}
    assert {"total_amount", "currency", "order_number", "status"} <= body_fields("/api/v1/orders/", "post")
    assert {"username", "password", "email"} <= body_fields("/api/v1/auth/register/", "post")


def test_schema_declares_the_token_scheme(schema):
    assert schema["securityDefinitions"]["Token"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <key>` from POST /api/v1/auth/token/",
    }
    assert schema["paths"]["/api/v1/auth/token/"]["post"]["security"] == []
    # Public, with more for a staff token.
    assert schema["paths"]["/api/v1/health/"]["get"]["security"] == [{"Token": []}, {}]


def test_schema_states_query_parameters_with_their_types(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/orders/"]["get"]["parameters"]}

    assert parameters["status"]["type"] == "array" and parameters["status"]["collectionFormat"] == "multi"
    assert parameters["customer"]["type"] == "integer"
    assert parameters["created_after"]["format"] == "date-time"
    assert (parameters["page_size"]["minimum"], parameters["page_size"]["maximum"]) == (1, 100)


def test_schema_says_what_may_be_blank_and_what_is_refused(schema):
    definitions = schema["definitions"]

    assert "minLength" not in definitions["Order"]["properties"]["notes"]
    assert "" in definitions["OrderEvent"]["properties"]["from_status"]["enum"]
    assert definitions["OrderCreate"]["additionalProperties"] is False
    assert definitions["NotificationBulk"]["properties"]["notifications"]["maxItems"] == 1000
    stats = schema["paths"]["/api/v1/notifications/stats/"]["get"]["responses"]["200"]["schema"]
    assert stats == {"$ref": "#/definitions/NotificationStats"}


def test_schema_error_responses_use_the_error_shape(schema):
    response = schema["paths"]["/api/v1/orders/{id}/status/"]["put"]["responses"]["409"]
    ref = response["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["definitions"][ref]["properties"]) == {"error"}


def _operations(schema):
    return [
        (method, path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
    ]


def test_every_operation_has_one_of_seven_tags_a_summary_and_a_readable_id(schema):
    operations = _operations(schema)
    ids = [operation["operationId"] for _, _, operation in operations]

    assert len(operations) >= 30
    for method, path, operation in operations:
        assert len(operation["tags"]) == 1, (method, path)
        assert operation["tags"][0] in {"auth", "customers", "orders", "notifications", "inbox", "realtime", "health"}
        assert operation.get("summary"), (method, path)
        assert not operation["operationId"].startswith("api_v1"), (method, path)
    assert len(set(ids)) == len(ids)
    assert {"orders_list", "orders_create", "auth_token_check", "notifications_send"} <= set(ids)


def test_the_docs_pages_load_nothing_from_other_hosts(client):
    for page in ("/api/docs/", "/api/redoc/"):
        response = client.get(page)

        assert response.status_code == 200
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    swagger = client.get("/api/docs/").content.decode()
    settings_json = re.search(r'<script id="swagger-settings"[^>]*>(.*?)</script>', swagger, re.S)
    assert json.loads(settings_json.group(1))["validatorUrl"] is None  # no badge fetched from the validator
