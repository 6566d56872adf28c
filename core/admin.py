"""Sellers in the Django admin, with their balances, read-only: sellers are created through the
API (`seller_create` makes the user, profile and account together) and balances change only in
the ledger's posting code."""

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from core.admin_mixins import ReadOnlyAdminMixin
from core.models import Seller, SellerAPIKey
from core.throttling import client_address, login_failed, login_succeeded, login_wait


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin site's login, throttled by the API login's rule and counters (core/throttling.py):
    otherwise it would be the way around the API's limits."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed logins; try again in %(wait)d seconds.",
    }

    def clean(self):
        username, address = self.cleaned_data.get("username") or "", client_address(self.request)
        wait = login_wait(username=username, address=address)
        if wait is not None:
            raise ValidationError(self.error_messages["throttled"], code="throttled", params={"wait": wait})
        try:
            cleaned = super().clean()
        except ValidationError:
            login_failed(username=username, address=address)
            raise
        if self.get_user() is not None:  # not when a field was left empty: nothing was checked
            login_succeeded(username=username, address=address)
        return cleaned


admin.site.login_form = ThrottledAdminLoginForm


@admin.register(Seller)
class SellerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "name", "username", "is_active", "balance", "last_seq", "created_at")
    list_select_related = ("user", "account")
    search_fields = ("=id", "name", "user__username")
    readonly_fields = ("id", "name", "user", "created_at", "balance", "last_seq")
    fields = readonly_fields
    show_full_result_count = False

    @admin.display(ordering="user__username")
    def username(self, obj: Seller) -> str:
        return obj.user.get_username()

    @admin.display(boolean=True)
    def is_active(self, obj: Seller) -> bool:
        return obj.user.is_active

    @admin.display(ordering="account__balance", description="balance")
    def balance(self, obj: Seller) -> int | None:
        account = getattr(obj, "account", None)
        return None if account is None else account.balance

    @admin.display(ordering="account__last_seq", description="last entry seq")
    def last_seq(self, obj: Seller) -> int | None:
        account = getattr(obj, "account", None)
        return None if account is None else account.last_seq


@admin.register(SellerAPIKey)
class SellerAPIKeyAdmin(APIKeyModelAdmin):
    """Issue and revoke sellers' API keys in the admin site too; the full key is shown once, in
    the message after saving, as in the API."""

    list_display = ("prefix", "name", "seller", "created", "expiry_date", "_has_expired", "revoked")
    list_select_related = ("seller",)
    search_fields = ("name", "prefix", "seller__name")
    raw_id_fields = ("seller",)


# The library's own key model is not used: every key belongs to a seller.
admin.site.unregister(APIKey)
