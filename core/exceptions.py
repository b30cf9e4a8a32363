"""One JSON error shape for every failure the API reports.

    {"error": {"code": "validation_error", "message": "...", "fields": {...}}}

`fields` appears for invalid input (field name -> list of messages); other
errors may add keys of their own (e.g. `allowed` for a refused transition).
"""

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from core.db import db_pool_check
from core.input import RequestTooLarge

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A domain rule refused the request; raised by services."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message, *, code=None, extra=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra or {}


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


def error_body(code, message, **extra):
    return {"error": {"code": code, "message": message, **extra}}


def _fields(detail, path=""):
    """Flatten DRF's nested error detail into {"field": [...], "items[2].field": [...]}."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            # A list serializer reports its items under integer keys.
            child = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
            out.update(_fields(value, child))
        return out
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        out = {}
        for index, item in enumerate(detail):
            out.update(_fields(item, f"{path}[{index}]"))
        return out
    messages = detail if isinstance(detail, list) else [detail]
    return {path or "non_field_errors": [str(m) for m in messages]}


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, **exc.extra), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handler answers, in JSON too

    if isinstance(exc, exceptions.ValidationError):
        fields = _fields(exc.detail)
        only_general = list(fields) == ["non_field_errors"]
        message = fields["non_field_errors"][0] if only_general else "Some fields are invalid."
        response.data = error_body("validation_error", message, fields=fields)
    else:
        code = exc.detail.code if hasattr(exc.detail, "code") else exc.default_code
        extra = dict(getattr(exc, "extra", {}))
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            extra["retry_after"] = math.ceil(exc.wait)
        response.data = error_body(code, str(exc.detail), **extra)
    return response


def body_size_middleware(get_response):
    """Answer 413 to a body announced over the limit, before anything reads it."""

    def middleware(request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            exc = RequestTooLarge(limit)
            return JsonResponse(error_body(exc.default_code, str(exc.detail), **exc.extra), status=exc.status_code)
        return get_response(request)

    return middleware


# What a client is asked to wait after the database dropped its connection.
DATABASE_RETRY_AFTER_SECONDS = 2


class DatabaseUnavailableMiddleware:
    """A request whose database connection failed under it answers 503 with
    Retry-After: the pool hands the next one a checked connection."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("Database unavailable during %s %s: %s", request.method, request.path, exception)
        db_pool_check()
        body = error_body(
            "database_unavailable",
            "The database is unavailable; try again shortly.",
            retry_after=DATABASE_RETRY_AFTER_SECONDS,
        )
        response = JsonResponse(body, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response


def json_bad_request(request, exception=None):
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)


def json_page_not_found(request, exception=None):
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_server_error(request):
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
