from datetime import UTC

from rest_framework import serializers

from core.api.serializers import ALL_ROLE_CHOICES
from core.models import Seller
from ledger.api import schema as _schema  # noqa: F401  (registers the OpenAPI extensions)
from ledger.charge_rules import (
    REFERENCE_MAX_LENGTH,
    is_valid_idempotency_key,  # noqa: F401  (imported from here by the charge POST)
)
from ledger.fields import AmountField, PhoneNumberField
from ledger.models import Charge, Deposit, Entry


class SellerOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    balance = serializers.IntegerField(source="account.balance")
    is_active = serializers.BooleanField(source="user.is_active")

    class Meta:
        model = Seller
        fields = ["id", "username", "name", "balance", "is_active", "created_at"]


class SellerCreateInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    name = serializers.CharField(max_length=200)


class ReconcileOutput(serializers.Serializer):
    seller = serializers.IntegerField()
    balance = serializers.IntegerField()
    ledger_sum = serializers.IntegerField()
    entries = serializers.IntegerField()
    last_seq = serializers.IntegerField()
    ok = serializers.BooleanField()


class MeSellerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    balance = serializers.IntegerField()


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=ALL_ROLE_CHOICES)
    seller = MeSellerOutput(allow_null=True)


class DepositCreateInput(serializers.Serializer):
    amount = AmountField()
    reference = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class DepositRejectInput(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class DepositOutput(serializers.ModelSerializer):
    class Meta:
        model = Deposit
        fields = [
            "id",
            "seller",
            "amount",
            "reference",
            "status",
            "created_at",
            "decided_at",
            "decided_by",
            "reason",
            "applied_at",
            "balance_after",
        ]


class ChargeCreateInput(serializers.Serializer):
    phone_number = PhoneNumberField()
    amount = AmountField()
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, required=False, allow_blank=True, default="")


class ChargeOutput(serializers.ModelSerializer):
    class Meta:
        model = Charge
        fields = [
            "id",
            "seller",
            "phone_number",
            "amount",
            "reference",
            "status",
            "failure_code",
            "balance_after",
            "batch",
            "created_at",
            "settled_at",
        ]


def _iso(value) -> str | None:
    # What DRF's DateTimeField renders for an aware UTC datetime.
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def charge_output(charge: Charge) -> dict:
    """`ChargeOutput(charge).data`, built by hand for the charge POST (the hot path): DRF builds
    a ModelSerializer's fields anew for every instance, which cost as much CPU as the request's
    database work. `tests/api/test_reading.py` checks that both render the same."""
    return {
        "id": charge.pk,
        "seller": charge.seller_id,
        "phone_number": charge.phone_number,
        "amount": charge.amount,
        "reference": charge.reference,
        "status": charge.status,
        "failure_code": charge.failure_code,
        "balance_after": charge.balance_after,
        "batch": charge.batch_id,
        "created_at": _iso(charge.created_at),
        "settled_at": _iso(charge.settled_at),
    }


class EntryOutput(serializers.ModelSerializer):
    class Meta:
        model = Entry
        fields = [
            "id",
            "seller",
            "seq",
            "kind",
            "amount",
            "balance_before",
            "balance_after",
            "charge",
            "deposit",
            "created_at",
        ]


def idempotency_key_from(request) -> str | None:
    """The `Idempotency-Key` header: 1-255 printable ASCII characters, or absent."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not is_valid_idempotency_key(key):
        raise serializers.ValidationError({"Idempotency-Key": ["Must be 1-255 printable characters."]})
    return key
