"""Inputs and answers of the statements endpoints (docs/api.md, "Statements")."""

import base64
from datetime import UTC, datetime

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

BIGINT_MAX = 2**63 - 1
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class BoundedDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time between 1970 and 9000, in UTC (PostgreSQL refuses offsets past 15:59)."""

    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if not (_EARLIEST <= moment <= _LATEST):
            raise serializers.ValidationError("Must be between 1970 and 9000.")
        return moment.astimezone(UTC)


class SellerQuery(serializers.Serializer):
    seller = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX, required=False)


class BalanceAtQuery(SellerQuery):
    at = BoundedDateTimeField(required=False, help_text="Default: now.")


class BalanceAtOutput(serializers.Serializer):
    seller = serializers.IntegerField(source="seller_id")
    at = serializers.DateTimeField()
    seq = serializers.IntegerField(help_text="The last entry at or before `at` (0: none yet).")
    entry_created_at = serializers.DateTimeField(allow_null=True)
    balance = serializers.IntegerField(help_text="Available to spend, as `balance` everywhere in this API.")
    available = serializers.IntegerField(source="balance", help_text="The same number as `balance`.")
    held = serializers.IntegerField(help_text="Reserved by charges not final at `at`.")


class PublicKeyOutput(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField(default="Ed25519")
    public_key = serializers.CharField(source="base64", help_text="The raw 32-byte public key, base64.")
    public_key_pem = serializers.CharField(source="pem")
    current = serializers.BooleanField(help_text="The key signing new checkpoints; the others are retired.")


class PublicKeysOutput(serializers.Serializer):
    keys = PublicKeyOutput(many=True)


@extend_schema_field(OpenApiTypes.STR)
class HexField(serializers.Field):
    def to_representation(self, value):
        return bytes(value).hex()


@extend_schema_field(OpenApiTypes.STR)
class Base64Field(serializers.Field):
    def to_representation(self, value):
        return base64.b64encode(bytes(value)).decode()


class CheckpointOutput(serializers.Serializer):
    seller = serializers.IntegerField(source="seller_id")
    seq = serializers.IntegerField()
    hash = HexField(help_text="The hash of entry `seq` (hex); 64 zeros at seq 0.")
    balance = serializers.IntegerField(help_text="That entry's balance_after.")
    entry_created_at = serializers.DateTimeField(allow_null=True)
    signed_at = serializers.DateTimeField()
    key_id = serializers.CharField()
    signature = Base64Field(help_text="Ed25519 over the checkpoint's message (docs/api.md), base64.")


class StatementRequestInput(serializers.Serializer):
    seller = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX, required=False, help_text="Staff only.")
    period_start = BoundedDateTimeField()
    period_end = BoundedDateTimeField(help_text="Excluded; not in the future.")

    def validate(self, attrs):
        if attrs["period_start"] >= attrs["period_end"]:
            raise serializers.ValidationError({"period_end": ["Must be after period_start."]})
        if attrs["period_end"] > timezone.now():
            raise serializers.ValidationError({"period_end": ["The period must be over."]})
        return attrs


class StatementOutput(serializers.Serializer):
    id = serializers.IntegerField()
    seller = serializers.IntegerField(source="seller_id")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=["queued", "ready"])
    created_at = serializers.DateTimeField()
    ready_at = serializers.DateTimeField(allow_null=True)
    entries = serializers.IntegerField(allow_null=True)
    opening_seq = serializers.IntegerField(allow_null=True)
    opening_balance = serializers.IntegerField(allow_null=True)
    closing_seq = serializers.IntegerField(allow_null=True)
    closing_balance = serializers.IntegerField(allow_null=True)
    checkpoint = CheckpointOutput(allow_null=True)
    formats = serializers.ListField(child=serializers.CharField())
    downloads = serializers.SerializerMethodField()

    def get_downloads(self, statement) -> dict[str, str]:
        return {fmt: f"/api/v1/statements/{statement.pk}/download/{fmt}/" for fmt in statement.formats}
