"""The catalog in the admin site: admins switch operators and products on and off and write price
rules (checked against cost as the API checks them); synced data and versions are read-only."""

from django import forms
from django.contrib import admin

from catalog.models import (
    Country,
    NumberingPrefix,
    Operator,
    PriceList,
    PriceRule,
    Product,
    ProductRoute,
    ProductVersion,
    Quote,
)
from catalog.services.prices import PAST_SLACK, price_rule_problems
from core.admin_mixins import ReadOnlyAdminMixin


class _SyncedAdmin(admin.ModelAdmin):
    """Synced rows: only `enabled` is an admin's to change; nothing is added or deleted here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "enabled"]


@admin.register(Country)
class CountryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["iso_code", "name", "dialing_code"]
    search_fields = ["iso_code", "name"]


@admin.register(Operator)
class OperatorAdmin(_SyncedAdmin):
    list_display = ["id", "name", "country", "provider", "provider_operator_id", "enabled", "withdrawn_at"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "provider", "country"]
    search_fields = ["name", "provider_operator_id"]


@admin.register(Product)
class ProductAdmin(_SyncedAdmin):
    list_display = ["id", "name", "operator", "provider_product_id", "enabled", "withdrawn_at"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "provider", "operator__country"]
    search_fields = ["name", "provider_product_id"]
    list_select_related = ["operator"]


@admin.register(ProductVersion)
class ProductVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "product", "kind", "service", "amount", "min_amount", "max_amount", "cost", "effective_from"]
    list_filter = ["kind", "service"]
    list_select_related = ["product"]


@admin.register(ProductRoute)
class ProductRouteAdmin(admin.ModelAdmin):
    """Which providers deliver a product, in order (docs/operations.md, "Routes"): an admin's to
    write; the model's clean() refuses a provider not configured or a product delivering otherwise."""

    list_display = ["id", "product", "priority", "served_by", "enabled", "updated_at"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "served_by__provider"]
    search_fields = ["product__name", "served_by__name", "served_by__provider_product_id"]
    autocomplete_fields = ["product", "served_by"]
    list_select_related = ["product", "served_by"]


@admin.register(NumberingPrefix)
class NumberingPrefixAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "operator"]
    search_fields = ["prefix"]
    list_select_related = ["operator"]


@admin.register(PriceList)
class PriceListAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "is_default", "seller"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PriceRuleForm(forms.ModelForm):
    class Meta:
        model = PriceRule
        fields = ["price_list", "operator", "product", "method", "basis_points", "allow_below_cost", "effective_from"]

    def clean(self):
        from django.utils import timezone

        data = super().clean()
        operator, product = data.get("operator"), data.get("product")
        if (operator is None) == (product is None):
            raise forms.ValidationError("Name either an operator or a product.")
        if data.get("effective_from") and data["effective_from"] < timezone.now() - PAST_SLACK:
            raise forms.ValidationError("A rule cannot start in the past.")
        if data.get("method") and data.get("basis_points") is not None:
            problems = price_rule_problems(
                operator=operator,
                product=product,
                method=data["method"],
                basis_points=data["basis_points"],
                allow_below_cost=data.get("allow_below_cost", False),
            )
            if problems:
                raise forms.ValidationError(["Below cost (tick 'allow below cost' to allow):", *problems[:10]])
        return data


@admin.register(PriceRule)
class PriceRuleAdmin(admin.ModelAdmin):
    """Rules are added, never changed: a new rule with a later start replaces one."""

    form = PriceRuleForm
    list_display = [
        "id",
        "price_list",
        "operator",
        "product",
        "method",
        "basis_points",
        "allow_below_cost",
        "effective_from",
    ]
    list_filter = ["price_list", "method", "allow_below_cost"]
    raw_id_fields = ["operator", "product"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Quote)
class QuoteAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "seller", "msisdn", "product_version", "price", "cost", "expires_at", "used_at"]
    list_select_related = ["seller"]
