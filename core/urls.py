from django.urls import path

from core import api, health

urlpatterns = [
    path("health/", health.HealthApi.as_view(), name="health"),
    path("auth/token/", api.TokenApi.as_view(), name="auth-token"),
    path("auth/token/check/", api.TokenCheckApi.as_view(), name="auth-token-check"),
    path("auth/logout/", api.LogoutApi.as_view(), name="auth-logout"),
]
