from rest_framework import serializers


class TicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Pass as ?ticket= when opening /ws/events/; it works once.")
    expires_in = serializers.IntegerField(help_text="Seconds left to use it.")
    last_event_id = serializers.IntegerField(
        help_text="The newest event id in the log when the ticket was issued; "
        "connecting with ?last_event_id= this misses nothing that happens meanwhile."
    )
