"""The ledger's one way out: every event it tells other apps about.

The ledger imports neither the workers nor the notifications. A service or the settle calls one
function here per event, inside the transaction of the change (or in autocommit, where the change
was one statement); the function calls each subscriber that `settings.LEDGER_EVENT_SUBSCRIBERS`
lists for the event, in order, with the same keyword arguments. A subscriber that records writes
in that transaction, so its rows commit or roll back with the change (the notifications' outbox);
one that delivers later registers an on_commit callback (the workers' wake-ups, the provider
sends). Settings wire the apps together; `ledger.E001` refuses a missing or unknown event.

`intents_recorded` runs once per charge POST and `intents_settled` once per settle batch: each
function loops over its subscribers itself, with no `**kwargs` helper between them on that path."""

from collections.abc import Callable
from datetime import datetime
from functools import cache

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

# Every event of the port, by the name its subscribers are listed under.
EVENTS = (
    "intents_recorded",
    "batch_uploaded",
    "charges_reserved",
    "intents_settled",
    "batch_completed",
    "deposit_rejected",
    "statement_requested",
    "statement_ready",
    "callback_received",
)


def intents_recorded(*, seller_id: int) -> None:
    """Charges or an approved deposit wait for the seller's settle (wake the seller up)."""
    for subscriber in _subscribers("intents_recorded"):
        subscriber(seller_id=seller_id)


def batch_uploaded(*, batch_id: int) -> None:
    """A charge list is stored as a `validating` batch (start its import)."""
    for subscriber in _subscribers("batch_uploaded"):
        subscriber(batch_id=batch_id)


def charges_reserved(*, charge_ids: list[int]) -> None:
    """The settle placed these charges' holds (send them to the provider)."""
    for subscriber in _subscribers("charges_reserved"):
        subscriber(charge_ids=charge_ids)


def intents_settled(*, now: datetime, intents: list[tuple], balances: list[tuple]) -> None:
    """One settle batch's outcomes. `intents`: (seller id, type, charge id, deposit id, amount,
    balance after, failure code) in the order applied, type one of `charge.succeeded`,
    `charge.failed`, `deposit.approved`; `balances`: (seller id, balance before, balance after)
    of each seller the batch changed."""
    for subscriber in _subscribers("intents_settled"):
        subscriber(now=now, intents=intents, balances=balances)


def batch_completed(*, seller_id: int, batch_id: int, status: str, succeeded: int, failed: int) -> None:
    """A charge batch reached its final status (`completed`, or `rejected` by its import)."""
    for subscriber in _subscribers("batch_completed"):
        subscriber(seller_id=seller_id, batch_id=batch_id, status=status, succeeded=succeeded, failed=failed)


def deposit_rejected(*, seller_id: int, deposit_id: int, amount: int, reason: str) -> None:
    for subscriber in _subscribers("deposit_rejected"):
        subscriber(seller_id=seller_id, deposit_id=deposit_id, amount=amount, reason=reason)


def statement_requested(*, statement_id: int) -> None:
    """A statement was recorded `queued` (build it)."""
    for subscriber in _subscribers("statement_requested"):
        subscriber(statement_id=statement_id)


def statement_ready(*, seller_id: int, statement_id: int, period_start: datetime, period_end: datetime) -> None:
    """A statement was built and can be downloaded."""
    for subscriber in _subscribers("statement_ready"):
        subscriber(seller_id=seller_id, statement_id=statement_id, period_start=period_start, period_end=period_end)


def callback_received(*, provider: str, notice: dict) -> None:
    """A provider's callback passed the checks the web can make (apply it in a worker). Called
    outside any transaction; a subscriber that cannot queue it raises
    `ledger.errors.CallbackNotQueuedError`, which the provider is answered as a 503."""
    for subscriber in _subscribers("callback_received"):
        subscriber(provider=provider, notice=notice)


@cache
def _subscribers(event: str) -> tuple[Callable[..., None], ...]:
    return tuple(import_string(path) for path in settings.LEDGER_EVENT_SUBSCRIBERS[event])


def check_subscribers(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every event has its list of subscribers (empty is a choice, a missing one a mistake), no
    list names an event the ledger does not announce, and every subscriber imports."""
    configured = getattr(settings, "LEDGER_EVENT_SUBSCRIBERS", {})
    errors = []
    for event in sorted(set(EVENTS) ^ set(configured)):
        problem = "has no subscriber list" if event in EVENTS else "is not an event of ledger.events"
        errors.append(checks.Error(f"LEDGER_EVENT_SUBSCRIBERS: {event!r} {problem}", id="ledger.E001"))
    for event, paths in configured.items():
        for path in paths:
            try:
                import_string(path)
            except ImportError as exc:
                errors.append(checks.Error(f"LEDGER_EVENT_SUBSCRIBERS[{event!r}]: {exc}", id="ledger.E001"))
    return errors
