"""What every model admin of this project that only shows data shares."""


class ReadOnlyAdminMixin:
    """View only: no add, change or delete from the admin, whatever the user's permissions.
    Balances, entries and intents change only through the services and the posting code."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
