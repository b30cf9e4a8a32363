from django.urls import path
from rest_framework.routers import SimpleRouter

from orders.api import CustomerViewSet, OrderViewSet, RegisterApi, VerifyApi, VerifyResendApi

router = SimpleRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("orders", OrderViewSet, basename="order")

urlpatterns = [
    path("auth/register/", RegisterApi.as_view(), name="auth-register"),
    path("auth/verify/", VerifyApi.as_view(), name="auth-verify"),
    path("auth/verify/resend/", VerifyResendApi.as_view(), name="auth-verify-resend"),
    *router.urls,
]
