from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsStaff(BasePermission):
    message = "Only staff may do this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


class IsStaffOrReadOnly(BasePermission):
    """Any signed-in user reads; only staff change or delete."""

    message = "Only staff may change or delete this."

    def has_permission(self, request, view):
        return request.method in SAFE_METHODS or bool(request.user and request.user.is_staff)
