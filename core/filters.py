"""The list endpoints' query parameters, strict: each is documented with its
type, and a parameter the endpoint does not take, or a value it cannot read, is
a 400 rather than silently ignored."""

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters
from rest_framework.exceptions import ValidationError

ID_MAX = 2**63 - 1
# RFC 3339 with a UTC offset in use (-12:00 to +14:00), and not a time that
# such an offset puts outside the years 1 to 9999.
DATE_TIME_PATTERN = (
    r"^(?!0001-01-01T|9999-12-31T).*"
    r"(Z|z|\+(0[0-9]|1[0-3]):[0-5][0-9]|\+14:00|-(0[0-9]|1[01]):[0-5][0-9]|-12:00)$"
)


class IdFilter(django_filters.NumberFilter):
    """A record's id: a positive integer (django-filter's NumberFilter reads decimals)."""

    field_class = forms.IntegerField

    def __init__(self, **kwargs):
        super().__init__(min_value=1, max_value=ID_MAX, **kwargs)


class _TrueOrFalseField(forms.NullBooleanField):
    """`true` or `false` (or 1 and 0); another value is an error, not "no filter"."""

    widget = forms.TextInput  # the raw value: Django's select makes anything unknown None

    choices = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if str(value).lower() not in self.choices:
            raise forms.ValidationError("Use true or false.", code="invalid")
        return self.choices[str(value).lower()]


class BooleanFilter(django_filters.BooleanFilter):
    field_class = _TrueOrFalseField


def _filter_schema(name, filter_):
    field_class = filter_.field_class
    description = str(filter_.extra.get("help_text") or filter_.label or "")
    if issubclass(field_class, forms.ChoiceField):
        choices = {"type": "string", "enum": [str(value) for value, _ in filter_.extra["choices"]]}
        if issubclass(field_class, forms.MultipleChoiceField):
            schema = {"type": "array", "items": choices, "collectionFormat": "multi"}
            description = description or "Repeat for several."
        else:
            schema = choices
    elif issubclass(field_class, forms.NullBooleanField):
        schema = {"type": "boolean"}
    elif issubclass(field_class, forms.IntegerField):
        schema = {"type": "integer", "minimum": filter_.extra["min_value"], "maximum": filter_.extra["max_value"]}
    elif issubclass(field_class, forms.DecimalField):
        schema = {"type": "number"}
    elif issubclass(field_class, forms.DateTimeField):
        schema = {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN}
    else:
        schema = {"type": "string"}
    if not issubclass(field_class, forms.MultipleChoiceField):
        schema["allowEmptyValue"] = True  # `?name=` is as if it were not there
    return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with each filter's type in the schema."""

    def get_schema_operation_parameters(self, view):
        filterset_class = getattr(view, "filterset_class", None)
        if filterset_class is None:
            return []
        return [_filter_schema(name, filter_) for name, filter_ in filterset_class.base_filters.items()]


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering, refusing fields it does not sort by instead of dropping them."""

    def get_ordering(self, request, queryset, view):
        param = request.query_params.get(self.ordering_param)
        if param is None:
            return self.get_default_ordering(view)
        terms = param.split(",")
        valid = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        if any(term.removeprefix("-") not in valid for term in terms):
            raise ValidationError(
                {self.ordering_param: [f"Sort by {', '.join(valid)}, comma-separated, each optionally with `-`."]}
            )
        return terms

    def get_schema_operation_parameters(self, view):
        fields = "|".join(getattr(view, "ordering_fields", None) or [])
        term = f"-?({fields})"
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Sort by these fields, comma-separated; `-` before a field for descending.",
                "schema": {"type": "string", "pattern": f"^{term}(,{term})*$"},
            }
        ]


class KnownQueryParams(filters.BaseFilterBackend):
    """Refuse query parameters the endpoint does not document. A list (a route
    without an id) takes its filters, ordering and pagination; a single
    record takes none. What a view's action takes is worked out once."""

    _known = {}  # (view class, action) -> the names it takes

    def _known_for(self, view):
        key = (type(view), getattr(view, "action", None))
        if key not in self._known:
            sources = []
            if getattr(view, "detail", True) is False:
                sources = [backend() for backend in view.filter_backends]
                if view.paginator is not None:
                    sources.append(view.paginator)
            self._known[key] = {
                param["name"] for source in sources for param in source.get_schema_operation_parameters(view)
            }
        return self._known[key]

    def filter_queryset(self, request, queryset, view):
        unknown = sorted(set(request.query_params) - self._known_for(view))
        if unknown:
            raise ValidationError({name: ["Unknown query parameter."] for name in unknown})
        return queryset
