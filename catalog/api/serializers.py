"""Inputs and outputs of the catalog API. Outputs read plain dicts built by the views (a listing
prices many products at once), so the schema still names every field."""

from rest_framework import serializers

from catalog.models import Operator, PriceRule, Quote, RuleMethod
from core.fields import AmountField, PhoneNumberField


class CountryOutput(serializers.Serializer):
    iso_code = serializers.CharField()
    name = serializers.CharField()
    dialing_code = serializers.CharField()


class OperatorOutput(serializers.ModelSerializer):
    country = CountryOutput()

    class Meta:
        model = Operator
        fields = ["id", "name", "country", "provider", "provider_operator_id", "enabled", "withdrawn_at"]


class EnabledInput(serializers.Serializer):
    enabled = serializers.BooleanField()


class ProductsQuery(serializers.Serializer):
    phone_number = PhoneNumberField(required=False)
    operator = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    seller = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class ProductOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    operator = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["fixed", "ranged"])
    service = serializers.ChoiceField(choices=["airtime", "data"])
    destination_currency = serializers.CharField()
    amount = serializers.IntegerField(allow_null=True)
    min_amount = serializers.IntegerField(allow_null=True)
    max_amount = serializers.IntegerField(allow_null=True)
    amount_step = serializers.IntegerField(
        allow_null=True, help_text="Ranged: amounts are min_amount + k * amount_step."
    )
    description = serializers.CharField()
    validity = serializers.CharField()
    currency = serializers.CharField(help_text="The platform currency every price is in.")
    price = serializers.IntegerField(allow_null=True, help_text="Fixed products: the seller's price.")
    price_min = serializers.IntegerField(allow_null=True, help_text="Ranged products: the price of min_amount.")
    price_max = serializers.IntegerField(allow_null=True, help_text="Ranged products: the price of max_amount.")
    enabled = serializers.BooleanField()
    cost = serializers.IntegerField(required=False, help_text="Staff only, fixed products: the provider's cost.")
    cost_min = serializers.IntegerField(
        required=False, help_text="Staff only, ranged products: the cost of min_amount."
    )
    cost_max = serializers.IntegerField(
        required=False, help_text="Staff only, ranged products: the cost of max_amount."
    )


class ResolvedOperatorOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    country = serializers.CharField()
    source = serializers.ChoiceField(choices=["explicit", "lookup", "prefix"])


class ProductListOutput(serializers.Serializer):
    phone_number = serializers.CharField(allow_null=True)
    operator = ResolvedOperatorOutput()
    results = ProductOutput(many=True)


class QuoteCreateInput(serializers.Serializer):
    phone_number = PhoneNumberField()
    product = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    amount = AmountField(required=False, help_text="In the destination currency's smallest unit; ranged products only.")
    operator = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class QuoteOutput(serializers.ModelSerializer):
    phone_number = serializers.CharField(source="msisdn")
    product = serializers.IntegerField(source="product_version.product_id")
    product_version = serializers.IntegerField(source="product_version_id")
    destination_currency = serializers.CharField(source="product_version.destination_currency")
    operator = serializers.IntegerField(source="operator_id")
    seller = serializers.IntegerField(source="seller_id")
    used = serializers.SerializerMethodField()

    class Meta:
        model = Quote
        fields = [
            "id", "seller", "phone_number", "operator", "product", "product_version", "destination_amount",
            "destination_currency", "price", "currency", "created_at", "expires_at", "used",
        ]  # fmt: skip

    def get_used(self, quote) -> bool:
        return quote.used_at is not None


class PriceRuleInput(serializers.Serializer):
    seller = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**63 - 1)
    operator = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    product = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    method = serializers.ChoiceField(choices=RuleMethod.choices)
    basis_points = serializers.IntegerField(min_value=0, max_value=100_000)
    effective_from = serializers.DateTimeField(required=False)
    allow_below_cost = serializers.BooleanField(default=False)

    def validate(self, data):
        if ("operator" in data) == ("product" in data):
            raise serializers.ValidationError({"operator": ["Name either an operator or a product."]})
        return data


class PriceRuleOutput(serializers.ModelSerializer):
    seller = serializers.IntegerField(source="price_list.seller_id", allow_null=True)

    class Meta:
        model = PriceRule
        fields = [
            "id", "seller", "operator", "product", "method", "basis_points", "allow_below_cost",
            "effective_from", "created_at",
        ]  # fmt: skip
