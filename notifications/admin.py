"""Admins read events, endpoints and the delivery log; they change nothing here (secrets stay hidden)."""

from django.contrib import admin

from core.admin_mixins import ReadOnlyAdmin
from notifications.models import Event, WebhookDelivery, WebhookEndpoint


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "seller_id", "seq", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["=seller__id"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ["id", "seller_id", "url", "enabled", "failing_since", "created_at"]
    list_filter = ["enabled"]
    exclude = ["secret", "previous_secret"]

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f not in self.exclude]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "endpoint_id",
        "event_id",
        "status",
        "attempts",
        "last_status_code",
        "last_duration_ms",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status"]
    list_select_related = False
    search_fields = ["=endpoint__id", "=event__id"]
