from drf_yasg.utils import swagger_auto_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.selectors import events_position
from realtime.serializers import TicketSerializer
from realtime.services import TICKET_TTL_SECONDS, ticket_issue


class TicketApi(APIView):
    @swagger_auto_schema(
        operation_summary="Get a one-time WebSocket ticket",
        operation_description=(
            "For browsers, which cannot set headers on a WebSocket: open "
            f"`/ws/events/?ticket=…` within {TICKET_TTL_SECONDS} s. The ticket works once. "
            "`last_event_id` is the event log's position now: pass it too "
            "(`&last_event_id=…`) and the socket also gets what happens before it opens."
        ),
        request_body=None,
        responses={201: TicketSerializer},
    )
    def post(self, request):
        body = {
            "ticket": ticket_issue(user=request.user),
            "expires_in": TICKET_TTL_SECONDS,
            "last_event_id": events_position(),
        }
        return Response(TicketSerializer(body).data, status=status.HTTP_201_CREATED)
