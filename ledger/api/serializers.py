from functools import cache

from rest_framework import serializers

from core.api.serializers import ALL_ROLE_CHOICES
from core.charge_rules import (
    REFERENCE_MAX_LENGTH,
    is_valid_idempotency_key,  # noqa: F401  (imported from here by the charge POST)
)
from core.fields import AmountField, PhoneNumberField
from core.models import Seller
from ledger.api import schema as _schema  # noqa: F401  (registers the OpenAPI extensions)
from ledger.models import Charge, Deposit, Entry


class SellerOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    balance = serializers.IntegerField(source="account.balance", help_text="Available to spend.")
    held = serializers.IntegerField(source="account.held", help_text="Reserved by charges not final yet.")
    is_active = serializers.BooleanField(source="user.is_active")

    class Meta:
        model = Seller
        fields = ["id", "username", "name", "balance", "held", "is_active", "created_at"]


class SellerCreateInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    name = serializers.CharField(max_length=200)


class ReconcileOutput(serializers.Serializer):
    seller = serializers.IntegerField()
    balance = serializers.IntegerField()
    held = serializers.IntegerField()
    open_holds = serializers.IntegerField(help_text="The amounts of the seller's charges not final yet.")
    ledger_sum = serializers.IntegerField()
    entries = serializers.IntegerField()
    last_seq = serializers.IntegerField()
    ok = serializers.BooleanField()


class MeSellerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    balance = serializers.IntegerField(help_text="Available to spend.")
    held = serializers.IntegerField(help_text="Reserved by charges not final yet.")


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


_ID = {"min_value": 1, "max_value": 2**63 - 1}


class ChargeCreateInput(serializers.Serializer):
    """A product (with an amount for a ranged one), an amount alone (the number's product for it),
    or a quote; the number is required unless the quote names it."""

    phone_number = PhoneNumberField(required=False)
    amount = AmountField(
        required=False, help_text="The top-up's value in the destination currency's smallest unit (face value)."
    )
    product = serializers.IntegerField(required=False, help_text="A product id (GET /api/v1/products/).", **_ID)
    operator = serializers.IntegerField(
        required=False, help_text="The number's operator, when it is not the one its prefix says.", **_ID
    )
    quote = serializers.IntegerField(required=False, help_text="A quote id (POST /api/v1/quotes/).", **_ID)
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if "quote" in attrs:
            extra = sorted({"amount", "product", "operator"} & attrs.keys())
            if extra:
                raise serializers.ValidationError({extra[0]: ["A charge with a quote sells what the quote says."]})
        elif "phone_number" not in attrs:
            raise serializers.ValidationError({"phone_number": ["This field is required."]})
        elif "amount" not in attrs and "product" not in attrs:
            raise serializers.ValidationError({"amount": ["This field is required (or name a product)."]})
        return attrs


class ChargeOutput(serializers.Serializer):
    # Declared rather than a ModelSerializer: it renders every charge POST's answer, and a
    # ModelSerializer derives its fields from the model anew for each instance it renders.
    id = serializers.IntegerField()
    seller = serializers.IntegerField(source="seller_id")
    phone_number = serializers.CharField()
    amount = serializers.IntegerField(help_text="What the seller pays, in the platform currency: held, then debited.")
    reference = serializers.CharField()
    operator = serializers.IntegerField(source="operator_id", allow_null=True)
    product = serializers.IntegerField(source="product_id", allow_null=True)
    quote = serializers.IntegerField(source="quote_id", allow_null=True)
    destination_amount = serializers.IntegerField(
        allow_null=True, help_text="The top-up asked for (face value), in the destination currency's smallest unit."
    )
    destination_currency = serializers.CharField(allow_null=True)
    delivered_amount = serializers.IntegerField(
        allow_null=True, help_text="What the provider reports it delivered, once it did."
    )
    delivered_currency = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Charge.Status.choices)
    stage = serializers.ChoiceField(choices=Charge.Stage.choices)
    provider_reference = serializers.CharField(allow_null=True)
    failure_code = serializers.ChoiceField(choices=Charge.FailureCode.choices, allow_null=True)
    balance_after = serializers.IntegerField(allow_null=True)
    batch = serializers.IntegerField(source="batch_id", allow_null=True)
    created_at = serializers.DateTimeField()
    settled_at = serializers.DateTimeField(allow_null=True)
    reversal_reason = serializers.CharField(
        allow_null=True, help_text="Why the provider reversed the delivered top-up (its own words), once it did."
    )
    reversed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the refund was applied (status `reversed`)."
    )


@cache
def _charge_output() -> ChargeOutput:
    return ChargeOutput()


def charge_representation(charge: Charge) -> dict:
    """`ChargeOutput(charge).data`, from one serializer kept for the process, as a ListSerializer
    renders every item with its one child: building a serializer's fields (a deep copy of each
    declared field) costs four times rendering them, on every charge POST's answer."""
    return _charge_output().to_representation(charge)


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
    """The `Idempotency-Key` header: 1-255 printable ASCII characters, or absent. Kept on the
    request too: a database connection lost after this request wrote answers 503 "retry with the
    same key" rather than 500 `outcome_unknown` (`core.errors.keyed`)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not is_valid_idempotency_key(key):
        raise serializers.ValidationError({"Idempotency-Key": ["Must be 1-255 printable characters."]})
    request.idempotency_key = key
    return key
