from drf_yasg.utils import no_body, swagger_auto_schema
from knox.models import AuthToken
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.selectors import events_position
from realtime.serializers import TicketSerializer
from realtime.services import TICKET_TTL_SECONDS, ticket_issue


def _ticket_for(request):
    """A ticket whose socket ends with the token, or else the session, this request came with."""
    if isinstance(request.auth, AuthToken):
        return ticket_issue(user=request.user, token=request.auth)
    return ticket_issue(user=request.user, session=request.session.session_key)


class TicketApi(APIView):
    @swagger_auto_schema(
        operation_summary="Get a one-time WebSocket ticket",
        operation_description=(
            "For browsers, which cannot set headers on a WebSocket: open "
            f"`/ws/events/?ticket=…` within {TICKET_TTL_SECONDS} s. The ticket works once. "
            "`last_event_id` is the event log's position now: pass it too "
            "(`&last_event_id=…`) and the socket also gets what happens before it opens. "
            "The socket ends (close code 4401) when the token or session that asked for the ticket does."
        ),
        request_body=no_body,
        responses={201: TicketSerializer},
    )
    def post(self, request):
        body = {
            "ticket": _ticket_for(request),
            "expires_in": TICKET_TTL_SECONDS,
            "last_event_id": events_position(),
        }
        return Response(TicketSerializer(body).data, status=status.HTTP_201_CREATED)
