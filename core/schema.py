from drf_yasg import openapi
from drf_yasg.inspectors import SwaggerAutoSchema
from drf_yasg.views import get_schema_view
from rest_framework.permissions import AllowAny

from core.permissions import IsStaff
from core.serializers import ErrorSerializer


def error_response(description):
    return openapi.Response(description, ErrorSerializer)


class HubAutoSchema(SwaggerAutoSchema):
    """Adds the error responses every endpoint can give, in the one error shape."""

    def get_response_serializers(self):
        responses = super().get_response_serializers()
        permissions = [type(p) for p in self.view.get_permissions()]
        public = AllowAny in permissions
        staff_only = IsStaff in permissions
        errors = {}
        has_body = self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None
        if has_body or self.should_filter() or self.should_page():
            errors["400"] = "Invalid input or malformed JSON"
        if not public:
            errors["401"] = "Missing, invalid, expired or revoked token"
        if staff_only:
            errors["403"] = "Staff only"
        if "{id}" in self.path or "{customer_id}" in self.path:
            errors["404"] = "Unknown id, or not visible to you"
        if getattr(self.view, "throttle_scope", None):
            errors["429"] = "Too many attempts; retry after `retry_after` seconds"
        for status_code, description in errors.items():
            responses.setdefault(status_code, error_response(description))
        return responses


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
    permission_classes=[AllowAny],
    authentication_classes=[],
)
