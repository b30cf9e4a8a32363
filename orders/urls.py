from rest_framework.routers import SimpleRouter

from orders.api import CustomerViewSet, OrderViewSet

router = SimpleRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("orders", OrderViewSet, basename="order")

urlpatterns = router.urls
