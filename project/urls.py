from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from core import health, metrics
from core.exceptions import json_bad_request, json_page_not_found, json_server_error
from core.schema import docs_offline, schema_view
from core.throttles import login_throttled

api_v1 = [
    path("", include("core.urls")),
    path("", include("orders.urls")),
    path("", include("notify.urls")),
    path("", include("realtime.urls")),
]

urlpatterns = [
    # Before the admin's own routes, so its sign-in is throttled like the API's.
    path("admin/login/", login_throttled(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/schema\.(?P<format>json)$", schema_view.without_ui(cache_timeout=0), name="schema-json"),
    path("api/docs/", docs_offline(schema_view.with_ui("swagger", cache_timeout=0)), name="schema-swagger-ui"),
    path("api/redoc/", docs_offline(schema_view.with_ui("redoc", cache_timeout=0)), name="schema-redoc"),
    path("health/redis/", health.RedisHealthApi.as_view(), name="health-redis"),
    path("health/worker/", health.WorkerHealthApi.as_view(), name="health-worker"),
    # The seed's name for the worker check, from when the workers were Celery.
    path("health/celery/", health.WorkerHealthApi.as_view(), name="health-celery"),
    # Where Prometheus looks by default.
    path("metrics", metrics.MetricsApi.as_view(), name="metrics"),
    # Where browsers look on pages that name no icon (the admin, the API docs).
    path("favicon.ico", RedirectView.as_view(url=static("frontend/icon.svg"), permanent=True), name="favicon"),
    path("", include("frontend.urls")),
]

handler400 = json_bad_request
handler404 = json_page_not_found
handler500 = json_server_error
