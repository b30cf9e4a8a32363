from functools import wraps

from django.core.exceptions import FieldDoesNotExist
from drf_yasg import openapi
from drf_yasg.generators import OpenAPISchemaGenerator
from drf_yasg.inspectors import FieldInspector, NotHandled, SwaggerAutoSchema
from drf_yasg.views import get_schema_view
from rest_framework.permissions import AllowAny
from rest_framework.serializers import ListSerializer

from core.permissions import IsStaff
from core.serializers import ErrorSerializer, StrictInputMixin


def error_response(description):
    return openapi.Response(description, ErrorSerializer)


def _may_be_blank(field):
    """Whether a string field may hold "": DRF builds read-only model fields
    without the model's `blank`, so the model is asked too."""
    if getattr(field, "allow_blank", False):
        return True
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    try:
        return model._meta.get_field(field.source).blank
    except (AttributeError, FieldDoesNotExist):
        return False


class TrueFieldInspector(FieldInspector):
    """Corrects what drf_yasg infers: a string that may be blank has no
    `minLength: 1` (and "" among its choices), a serializer refusing unknown
    keys says `additionalProperties: false`, and a list its bounds."""

    def field_to_swagger_object(self, field, swagger_object_type, use_references, **kwargs):
        return NotHandled

    def get_schema(self, serializer):
        return NotHandled  # probed for request and response bodies too, so process_result sees them

    def process_result(self, result, method_name, obj, **kwargs):
        schema = openapi.resolve_ref(result, self.components)
        if not isinstance(schema, openapi.Schema):
            return result
        if isinstance(obj, StrictInputMixin):
            schema["additionalProperties"] = False
        elif isinstance(obj, ListSerializer):
            if not obj.allow_empty:
                schema.setdefault("minItems", 1)
            if obj.max_length is not None:
                schema.setdefault("maxItems", obj.max_length)
        elif schema.get("type") == openapi.TYPE_STRING and _may_be_blank(obj):
            if schema.get("minLength") == 1:
                del schema["minLength"]
            if "enum" in schema and "" not in schema["enum"]:
                schema["enum"] = [*schema["enum"], ""]
        return result


# The API's groups, by the first part of the path after /api/v1/.
TAGS = {"auth": "auth", "customers": "customers", "orders": "orders", "notifications": "notifications"}
TAGS |= {"inbox": "inbox"}
TAGS |= {"realtime": "realtime", "health": "health", "metrics": "health"}


class HubAutoSchema(SwaggerAutoSchema):
    """Groups operations by tag with ids read off their path, gives every one
    a summary, adds the error responses every endpoint can give, in the one
    error shape, and marks public endpoints as such."""

    field_inspectors = [TrueFieldInspector, *SwaggerAutoSchema.field_inspectors]

    def _keys(self, operation_keys=None):
        keys = list(operation_keys or self.operation_keys)
        return keys[2:] if keys[:2] == ["api", "v1"] else keys

    def get_request_body_parameters(self, consumes):
        """`@swagger_auto_schema(body_optional=True)`: the body may be left out."""
        parameters = super().get_request_body_parameters(consumes)
        if self.overrides.get("body_optional"):
            for parameter in parameters:
                parameter.required = False
        return parameters

    def get_tags(self, operation_keys=None):
        return self.overrides.get("tags") or [TAGS[self._keys(operation_keys)[0]]]

    def get_operation_id(self, operation_keys=None):
        """`orders_list`, `orders_change_status`, `auth_token_check`: a view set's
        action names its operation; a plain view's method suffix says nothing."""
        if self.overrides.get("operation_id"):
            return self.overrides["operation_id"]
        keys = self._keys(operation_keys)
        return "_".join(keys if hasattr(self.view, "action") else keys[:-1] or keys)

    def get_summary_and_description(self):
        summary, description = super().get_summary_and_description()
        action = getattr(self.view, "action", None)
        if not summary and action in ("list", "retrieve"):
            meta = self.view.get_queryset().model._meta
            summary = f"List {meta.verbose_name_plural}" if action == "list" else f"Get one {meta.verbose_name}"
        return summary, description

    def _public(self):
        return AllowAny in [type(p) for p in self.view.get_permissions()]

    def get_security(self):
        security = super().get_security()
        if security is None and self._public():
            # Anyone may call it; a token, where it is read, shows more.
            return [{"Token": []}, {}] if self.view.authentication_classes else []
        return security

    def get_response_serializers(self):
        responses = super().get_response_serializers()
        permissions = [type(p) for p in self.view.get_permissions()]
        staff_only = IsStaff in permissions
        errors = {}
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        # Views that filter refuse query parameters they do not take, even where none is documented.
        if has_body or getattr(self.view, "filter_backends", None):
            errors["400"] = "Invalid input, malformed JSON or an unknown query parameter"
        if has_body:
            errors["413"] = "A body over the size limit (`limit_bytes`)"
        if not self._public():
            errors["401"] = "Missing, invalid, expired or revoked token"
        if staff_only:
            errors["403"] = "Staff only"
        if "{id}" in self.path or "{customer_id}" in self.path:
            errors["404"] = "Unknown id, or not visible to you"
        elif self.should_page():
            errors["404"] = "A page past the last one"
        if getattr(self.view, "throttle_scope", None):
            errors["429"] = "Too many attempts; retry after `retry_after` seconds"
        for status_code, description in errors.items():
            responses.setdefault(status_code, error_response(description))
        return responses


class HubSchemaGenerator(OpenAPISchemaGenerator):
    """States `produces` per operation rather than for the whole API: an
    operation whose success has no body (204) sends no Content-Type then, which
    Swagger 2 cannot say of one response, so such an operation states none."""

    def get_schema(self, request=None, public=False):
        schema = super().get_schema(request, public)
        produces = schema.pop("produces", None)
        for path in schema["paths"].values():
            for method, operation in path.items():
                if method == "parameters":
                    continue
                successes = [r for code, r in operation["responses"].items() if code.startswith("2")]
                if produces and all("schema" in response for response in successes):
                    operation.setdefault("produces", produces)
        return schema


# The docs pages fetch nothing from other hosts (ReDoc would, for its maker's
# logo): they work offline and tell no one who reads them.
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:"
)


def docs_offline(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_POLICY
        return response

    return wrapped


schema_view = get_schema_view(
    openapi.Info(
        title="Notification hub API",
        default_version="v1",
        description=(
            "Customers, orders and their notifications. Authenticate with "
            "`Authorization: Token <key>` from `POST /api/v1/auth/token/`. "
            'Every error is `{"error": {"code", "message", "fields"?}}`.'
        ),
    ),
    public=True,
    generator_class=HubSchemaGenerator,
    permission_classes=[AllowAny],
    authentication_classes=[],
)
