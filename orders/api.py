from drf_yasg.utils import no_body, swagger_auto_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import AnonymousAuthApi
from core.permissions import IsStaff
from core.schema import error_response
from core.serializers import RegisterSerializer, UserSerializer, VerifySerializer
from core.throttles import ScopedThrottle
from orders import accounts, selectors, services
from orders.filters import CustomerFilter, OrderFilter
from orders.models import Customer, Order
from orders.serializers import (
    CustomerSerializer,
    NotificationPreferenceSerializer,
    OrderCreateSerializer,
    OrderDetailSerializer,
    OrderSerializer,
    OrderStatusSerializer,
    OrderUpdateSerializer,
)

REDIRECT_REFUSED = error_response(
    "Changing `email` or `telegram_chat_id`: `email_not_verified` for an unverified owner, "
    "`permission_denied` for anyone else but the unowned record's creator and staff"
)


class RegisterApi(AnonymousAuthApi):
    @swagger_auto_schema(
        operation_summary="Register a user",
        operation_description="The account's email is unverified until the code mailed to it is posted "
        "to `/api/v1/auth/verify/`.",
        request_body=RegisterSerializer,
        responses={201: UserSerializer},
        security=[],
    )
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = accounts.account_register(**serializer.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class VerifyApi(AnonymousAuthApi):
    @swagger_auto_schema(
        operation_summary="Verify an account's email",
        operation_description="Takes the code from the verification mail; it works once, within "
        "`EMAIL_VERIFICATION_TTL_HOURS`. A customer record made with this email by someone else, "
        "and owned by no verified account, becomes this account's.",
        request_body=VerifySerializer,
        responses={
            200: UserSerializer,
            400: error_response("`invalid_code` or `code_expired`"),
            409: error_response("`email_taken`: another account verified this email"),
        },
        security=[],
    )
    def post(self, request):
        serializer = VerifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = accounts.account_verify(**serializer.validated_data)
        return Response(UserSerializer(user).data)


class VerifyResendApi(APIView):
    throttle_classes = [ScopedThrottle]
    throttle_scope = "verify_resend"

    @swagger_auto_schema(
        operation_summary="Mail a new verification code",
        operation_description="The code sent before stops working. Throttled (`VERIFY_RESEND_THROTTLE_RATE`).",
        request_body=no_body,
        responses={202: "", 409: error_response("`already_verified`")},
    )
    def post(self, request):
        accounts.account_verification_resend(user=request.user)
        return Response(status=status.HTTP_202_ACCEPTED)


class CustomerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Customers you own, and those you created that no one owns yet; staff see all."""

    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter
    ordering_fields = ["name", "email", "created_at", "updated_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Customer.objects.none()
        return selectors.customer_list(user=self.request.user)

    def get_permissions(self):
        if self.action == "destroy":
            return [IsAuthenticated(), IsStaff()]
        return [IsAuthenticated()]

    @swagger_auto_schema(operation_summary="Create a customer", responses={201: CustomerSerializer})
    def create(self, request):
        serializer = CustomerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(by=request.user, **serializer.validated_data)
        return Response(CustomerSerializer(customer).data, status=status.HTTP_201_CREATED)

    @swagger_auto_schema(
        operation_summary="Replace a customer's details",
        responses={200: CustomerSerializer, 403: REDIRECT_REFUSED},
    )
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @swagger_auto_schema(
        operation_summary="Change some of a customer's details",
        responses={200: CustomerSerializer, 403: REDIRECT_REFUSED},
    )
    def partial_update(self, request, pk=None):
        return self._update(request, partial=True)

    def _update(self, request, *, partial):
        customer = self.get_object()
        serializer = CustomerSerializer(customer, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_update(customer=customer, by=request.user, **serializer.validated_data)
        return Response(CustomerSerializer(customer).data)

    @swagger_auto_schema(
        operation_summary="Delete a customer (staff)",
        operation_description="409 `customer_has_orders` while the customer has orders.",
        responses={204: "", 409: error_response("`customer_has_orders`")},
    )
    def destroy(self, request, pk=None):
        services.customer_delete(customer=self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @swagger_auto_schema(
        method="get",
        operation_summary="A customer's notification preferences",
        responses={200: NotificationPreferenceSerializer},
    )
    @swagger_auto_schema(
        method="patch",
        operation_summary="Change a customer's notification preferences",
        request_body=NotificationPreferenceSerializer,
        responses={200: NotificationPreferenceSerializer},
    )
    @action(
        detail=True,
        methods=["get", "patch"],
        filter_backends=[],
        pagination_class=None,
        serializer_class=NotificationPreferenceSerializer,
    )
    def preferences(self, request, pk=None):
        customer = self.get_object()
        if request.method == "GET":
            return Response(NotificationPreferenceSerializer(selectors.preferences_get(customer=customer)).data)
        serializer = NotificationPreferenceSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        preferences = services.preferences_update(customer=customer, by=request.user, **serializer.validated_data)
        return Response(NotificationPreferenceSerializer(preferences).data)


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orders you placed or of customers you see; staff see all and alone change them."""

    filterset_class = OrderFilter
    ordering_fields = ["created_at", "updated_at", "total_amount", "order_number", "status"]
    ordering = ["-created_at", "-id"]
    staff_actions = {"update", "partial_update", "destroy", "change_status"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Order.objects.none()
        orders = selectors.order_list(user=self.request.user)
        return orders if self.action == "list" else selectors.order_with_history(orders)

    def get_serializer_class(self):
        return OrderSerializer if self.action == "list" else OrderDetailSerializer

    def get_permissions(self):
        if self.action in self.staff_actions:
            return [IsAuthenticated(), IsStaff()]
        return [IsAuthenticated()]

    def _detail(self, order):
        order = selectors.order_with_history(selectors.order_list(user=self.request.user)).get(pk=order.pk)
        return Response(OrderDetailSerializer(order).data)

    @swagger_auto_schema(
        operation_summary="Place an order",
        operation_description="The customer is the record linked to your account (made from your "
        "name and email on your first order); the tracking number is generated; the order starts pending.",
        request_body=OrderCreateSerializer,
        responses={201: OrderDetailSerializer},
    )
    def create(self, request):
        serializer = OrderCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_create(by=request.user, **serializer.validated_data)
        # Its placer may see it, and its history is the one row just written: no read back.
        return Response(OrderDetailSerializer(order).data, status=status.HTTP_201_CREATED)

    @swagger_auto_schema(
        operation_summary="Update an order (staff)",
        operation_description="Every field is optional, for PUT as for PATCH. A new `status` "
        "follows the state machine (409 `invalid_transition` otherwise).",
        request_body=OrderUpdateSerializer,
        responses={200: OrderDetailSerializer, 409: error_response("Refused status change")},
    )
    def update(self, request, pk=None):
        order = self.get_object()
        serializer = OrderUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_update(order=order, by=request.user, **serializer.validated_data)
        return self._detail(order)

    @swagger_auto_schema(
        operation_summary="Partially update an order (staff)",
        request_body=OrderUpdateSerializer,
        responses={200: OrderDetailSerializer, 409: error_response("Refused status change")},
    )
    def partial_update(self, request, pk=None):
        return self.update(request, pk)

    @swagger_auto_schema(operation_summary="Delete an order (staff)", responses={204: ""})
    def destroy(self, request, pk=None):
        services.order_delete(order=self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @swagger_auto_schema(
        method="put",
        operation_summary="Change an order's status (staff)",
        operation_description="pending → confirmed → processing → shipped → delivered (steps may be "
        "skipped forward); cancelled before shipping. Other moves: 409 `invalid_transition` with `allowed`.",
        request_body=OrderStatusSerializer,
        responses={200: OrderDetailSerializer, 409: error_response("Refused status change")},
    )
    @action(detail=True, methods=["put"], url_path="status", filter_backends=[])
    def change_status(self, request, pk=None):
        order = self.get_object()
        serializer = OrderStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_change_status(order=order, status=serializer.validated_data["status"], by=request.user)
        return self._detail(order)
