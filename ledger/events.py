"""How the ledger asks for a seller's intents to be settled without importing Celery.

`settings.LEDGER_WAKE_UP` names a callable (by default `workers.dispatch.wake_seller_on_commit`)
that schedules the wake-up for after the current transaction commits; likewise
`settings.LEDGER_IMPORT_START` (`workers.tasks.import_batch_on_commit`) for a stored charge list,
and `settings.LEDGER_FULFIL_START` (`workers.dispatch.fulfil_on_commit`) for reserved charges."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string


@cache
def _hook(setting: str):
    return import_string(getattr(settings, setting))


def intents_recorded(*, seller_id: int) -> None:
    _hook("LEDGER_WAKE_UP")(seller_id)


def batch_uploaded(*, batch_id: int) -> None:
    """A charge list is stored: `settings.LEDGER_IMPORT_START` starts its import after commit."""
    _hook("LEDGER_IMPORT_START")(batch_id)


def charges_reserved(*, charge_ids: list[int]) -> None:
    """Charges got their hold: `settings.LEDGER_FULFIL_START` sends them to the provider after commit."""
    _hook("LEDGER_FULFIL_START")(charge_ids)
