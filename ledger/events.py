"""How the ledger asks for a seller's intents to be settled without importing Celery.

`settings.LEDGER_WAKE_UP` names a callable (by default `workers.dispatch.wake_seller_on_commit`)
that schedules the wake-up for after the current transaction commits."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string


@cache
def _wake_up():
    return import_string(settings.LEDGER_WAKE_UP)


def intents_recorded(*, seller_id: int) -> None:
    _wake_up()(seller_id)
