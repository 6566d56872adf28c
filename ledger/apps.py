from django.apps import AppConfig
from django.core import checks


class LedgerConfig(AppConfig):
    name = "ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.events import check_subscribers

        checks.register(check_subscribers)
