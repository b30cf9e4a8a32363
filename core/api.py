from django.contrib.auth import logout
from drf_yasg.utils import no_body, swagger_auto_schema
from knox.models import AuthToken
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import services
from core.serializers import (
    TokenCheckSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from core.throttles import LoginUsernameThrottle, ScopedThrottle


class AnonymousAuthApi(APIView):
    """An auth endpoint for callers without credentials (sign in, register,
    verify): no authentication, held to the `auth` throttle per address."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "auth"


class TokenApi(AnonymousAuthApi):
    throttle_classes = [ScopedThrottle, LoginUsernameThrottle]

    @swagger_auto_schema(
        operation_summary="Get a token",
        operation_description="Wrong credentials answer 400 with code `invalid_credentials`.",
        request_body=TokenRequestSerializer,
        responses={200: TokenSerializer},
        security=[],
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = services.auth_token_create(**serializer.validated_data)
        return Response(TokenSerializer({"token": key, "expires_at": token.expiry}).data)


class TokenCheckApi(APIView):
    @swagger_auto_schema(operation_summary="Check a token", responses={200: TokenCheckSerializer})
    def get(self, request):
        expires_at = request.auth.expiry if isinstance(request.auth, AuthToken) else None
        body = {"valid": True, "user": request.user, "is_admin": request.user.is_admin, "expires_at": expires_at}
        return Response(TokenCheckSerializer(body).data)


class LogoutApi(APIView):
    @swagger_auto_schema(operation_summary="Revoke the token in use", request_body=no_body, responses={204: ""})
    def post(self, request):
        if isinstance(request.auth, AuthToken):
            services.auth_token_revoke(token=request.auth)
        else:
            logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)
