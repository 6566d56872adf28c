"""What every model admin of this project that only shows data shares, whichever app it is in."""

from django.contrib import admin


class ReadOnlyAdminMixin:
    """View only: no add, change or delete from the admin, whatever the user's permissions.
    What these admins show changes only through each app's services (balances, entries and
    intents only through the ledger's posting code)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View only, every field shown. Large tables: no full count on every page, no cross-table
    select by default."""

    show_full_result_count = False
    list_per_page = 50

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]
