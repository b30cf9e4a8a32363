"""Bounds on what a request may send, each refused in the one error shape:
a body over `DATA_UPLOAD_MAX_MEMORY_SIZE` (413), JSON nested deeper than
`JSON_MAX_DEPTH` (400 `parse_error`), a body where an action takes none
(400), and times whose UTC offset no place on Earth uses (400
`validation_error`)."""

import io
from datetime import UTC, timedelta

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework import exceptions, parsers, status

JSON_MAX_DEPTH = 32
# The offsets in use run from -12:00 (Baker Island) to +14:00 (Line Islands).
UTC_OFFSET_MIN, UTC_OFFSET_MAX = timedelta(hours=-12), timedelta(hours=14)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, limit):
        super().__init__(f"The request body is larger than the limit of {limit} bytes.")
        self.extra = {"limit_bytes": limit}


def body_refused(request):
    """For an action that takes no body: one that is there is refused (malformed
    JSON by the parser), not ignored. Nothing, `{}` or `[]` will do."""
    if request.data:
        raise exceptions.ValidationError({"non_field_errors": ["This takes no body: send none."]})


def _depth(data):
    """How deep `data` nests lists and objects, without recursing."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > JSON_MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the body and its nesting bounded. The body is
    read up to the limit even when no Content-Length announced it."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(limit)
        too_deep = exceptions.ParseError(f"JSON parse error - nested deeper than {JSON_MAX_DEPTH} levels.")
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if _depth(data) > JSON_MAX_DEPTH:
            raise too_deep
        return data


class IsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time, in UTC once read; an offset outside the ones in use is refused."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        offset = value.utcoffset()
        if not UTC_OFFSET_MIN <= offset <= UTC_OFFSET_MAX:
            raise ValidationError("The UTC offset must be between -12:00 and +14:00.", code="invalid")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC time there is
            raise ValidationError("The time is out of range once in UTC.", code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = IsoDateTimeField
