import pytest

EXPECTED_RESPONSES = {
    ("/api/v1/auth/register/", "post"): {"201", "400", "429"},
    ("/api/v1/auth/token/", "post"): {"200", "400", "429"},
    ("/api/v1/auth/token/check/", "get"): {"200", "401"},
    ("/api/v1/auth/logout/", "post"): {"204", "401"},
    ("/api/v1/health/", "get"): {"200", "503"},
    ("/health/redis/", "get"): {"200", "503"},
    ("/api/v1/customers/", "get"): {"200", "400", "401"},
    ("/api/v1/customers/", "post"): {"201", "400", "401"},
    ("/api/v1/customers/{id}/", "get"): {"200", "401", "404"},
    ("/api/v1/customers/{id}/", "put"): {"200", "400", "401", "404"},
    ("/api/v1/customers/{id}/", "patch"): {"200", "400", "401", "404"},
    ("/api/v1/customers/{id}/", "delete"): {"204", "401", "403", "404"},
    ("/api/v1/customers/{id}/preferences/", "get"): {"200", "401", "404"},
    ("/api/v1/customers/{id}/preferences/", "patch"): {"200", "400", "401", "404"},
    ("/api/v1/orders/", "get"): {"200", "400", "401"},
    ("/api/v1/orders/", "post"): {"201", "400", "401"},
    ("/api/v1/orders/{id}/", "get"): {"200", "401", "404"},
    ("/api/v1/orders/{id}/", "put"): {"200", "400", "401", "403", "404", "409"},
    ("/api/v1/orders/{id}/", "patch"): {"200", "400", "401", "403", "404", "409"},
    ("/api/v1/orders/{id}/", "delete"): {"204", "401", "403", "404"},
    ("/api/v1/orders/{id}/status/", "put"): {"200", "400", "401", "403", "404", "409"},
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


def test_schema_error_responses_use_the_error_shape(schema):
    response = schema["paths"]["/api/v1/orders/{id}/status/"]["put"]["responses"]["409"]
    ref = response["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["definitions"][ref]["properties"]) == {"error"}
