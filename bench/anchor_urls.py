from django.http import JsonResponse
from django.urls import path

from project.urls import handler404, handler500  # noqa: F401
from project.urls import urlpatterns as hub_urlpatterns


def bare(request):
    """Django's request path and middleware, and no work of the hub's own."""
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/bare/", bare, name="bench-bare"), *hub_urlpatterns]
