from rest_framework import serializers

from notifications.models import Event, SellerFeed, WebhookDelivery, WebhookEndpoint
from notifications.payload import event_data

# Types a seller may subscribe to (`webhook.test` goes only to the endpoint tested).
SUBSCRIBABLE_TYPES = [t for t in Event.Type.values if t != Event.Type.TEST]


class EventOutput(serializers.ModelSerializer):
    data = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["id", "type", "created_at", "seller", "seq", "data"]

    def get_data(self, event) -> dict:
        return event_data(
            event.type,
            event.charge_id,
            event.deposit_id,
            event.amount,
            event.balance_after,
            event.failure_code,
            event.data,
        )


class EndpointOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "event_types", "enabled", "disabled_reason", "failing_since", "created_at", "updated_at"]


class EndpointWithSecretOutput(EndpointOutput):
    """Only in the answers of create and rotate-secret: the secret is never shown again."""

    class Meta(EndpointOutput.Meta):
        fields = [*EndpointOutput.Meta.fields, "secret"]


class EndpointCreateInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_TYPES), max_length=len(SUBSCRIBABLE_TYPES), default=list
    )


class EndpointUpdateInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_TYPES), max_length=len(SUBSCRIBABLE_TYPES), required=False
    )
    enabled = serializers.BooleanField(required=False)


class DeliveryOutput(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type", read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "event_type",
            "status",
            "attempts",
            "last_status_code",
            "last_duration_ms",
            "last_error",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "created_at",
        ]


class FeedSettingsSerializer(serializers.ModelSerializer):
    low_balance_threshold = serializers.IntegerField(min_value=1, max_value=2**63 - 1, allow_null=True)

    class Meta:
        model = SellerFeed
        fields = ["low_balance_threshold"]
