from django.urls import path

from realtime import api

urlpatterns = [path("realtime/ticket/", api.TicketApi.as_view(), name="realtime-ticket")]
