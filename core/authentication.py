from django.utils import timezone
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """`Authorization: Token <key>`; keys are stored hashed, expire and can be revoked."""

    def authenticate_credentials(self, token):
        # knox decodes the raw header bytes as UTF-8; a header that is not
        # must be a 401 like any other bad token, not a server error.
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token):
        """Only the token at hand: knox would read every token of the user on
        every request to delete their expired ones, which the sweeper does
        instead (core.services.auth_tokens_prune)."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class OptionalTokenAuthentication(TokenAuthentication):
    """For public endpoints that tell staff more: a bad or expired token makes
    the caller anonymous instead of answering 401, so a probe never fails on it."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            return None
