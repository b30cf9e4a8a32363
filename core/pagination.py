from rest_framework import pagination
from rest_framework.exceptions import ValidationError


def _positive_int(request, name, maximum=None):
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) < 1 or (maximum and int(value) > maximum):
        bound = f" from 1 to {maximum}" if maximum else " from 1"
        raise ValidationError({name: [f"An integer{bound}."]})
    return int(value)


class _StrictPageSize:
    """`page_size`: a positive integer, at most 100."""

    page_size_query_param = "page_size"
    max_page_size = 100

    def get_page_size(self, request):
        return _positive_int(request, self.page_size_query_param, self.max_page_size) or self.page_size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_page_size})
        return parameters


class PageNumberPagination(_StrictPageSize, pagination.PageNumberPagination):
    """Pages of 20 by default; `page` and `page_size` must be positive integers
    (`page_size` at most 100), and a page past the last one is a 404."""

    last_page_strings = ()

    def get_page_number(self, request, paginator):
        return _positive_int(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


class CursorPagination(_StrictPageSize, pagination.CursorPagination):
    """Pages in the view's `ordering` (one field, unique), 20 by default: `next` and
    `previous` are links with an opaque `cursor`, stable while rows are added
    at the top, and a page costs the same however deep it is. A cursor that is
    not one is a 404."""

    page_size = 20

    def get_ordering(self, request, queryset, view):
        return (view.ordering,)
