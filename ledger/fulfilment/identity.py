"""Which provider transaction is ours.

External ids are unique for a provider account for ever, whatever happens to our database: each
is `PROVIDER_EXTERNAL_ID_PREFIX`, this database's installation token (ledger.models.Installation,
made once when the database is first used) and the charge id, fixed on the charge when it is first
sent. A reset database, a second stack or a staging copy has another token, so its charge ids,
which start again at 1, never name a transaction an earlier database sent.

A provider's answer is checked against what we asked before it settles anything: the same external
id, number and amount, and a transaction created no earlier than our charge (less
PROVIDER_CLOCK_SKEW). Anything else is a mismatch: an error for an admin, never a success and
never a failure (ledger/fulfilment/service.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection

from providers.base import LookupResult, Outcome, SubmitResult


def new_token() -> str:
    return secrets.token_hex(6)


@cache
def installation_token() -> str:
    """The token of this database, made by whichever process asks first. Cached per process: a
    rotation (`manage.py rotate_installation_id`) takes effect as processes restart, and charges
    already sent keep the id they were sent under."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_installation (id, token, created_at) VALUES (1, %s, clock_timestamp())"
            " ON CONFLICT (id) DO NOTHING",
            [new_token()],
        )
        cursor.execute("SELECT token FROM ledger_installation WHERE id = 1")
        return cursor.fetchone()[0]


def external_id_prefix() -> str:
    """What every external id this installation sends starts with."""
    return f"{settings.PROVIDER_EXTERNAL_ID_PREFIX}{installation_token()}-"


@dataclass(frozen=True)
class Asked:
    """What we asked the provider for one charge."""

    charge_id: int
    external_id: str
    msisdn: str
    amount: int  # the top-up's amount: the destination amount (ledger.charge_lifecycle.ASKED_COLUMNS)
    created_at: datetime
    product_id: str | None = None  # the provider's id of the product
    provider: str = ""  # the provider it is sent to ("": sent before routing, the default one)


def mismatch(asked: Asked, said: SubmitResult | LookupResult) -> str | None:
    """Why the provider's answer is not about the transaction we asked for, or None when it is."""
    if said.outcome is Outcome.MISMATCH:
        return said.detail or "the provider refused the id as already used for another transaction"
    if said.external_id is not None and said.external_id != asked.external_id:
        return f"answered about external id {said.external_id!r}, not {asked.external_id!r}"
    if said.msisdn is not None and said.msisdn != asked.msisdn:
        return f"answered for number {said.msisdn}, not {asked.msisdn}"
    if said.amount is not None and said.amount != asked.amount:
        return f"answered for amount {said.amount}, not {asked.amount}"
    skew = timedelta(seconds=settings.PROVIDER_CLOCK_SKEW)
    if said.created_at is not None and said.created_at < asked.created_at - skew:
        return (
            f"answered with a transaction created at {said.created_at.isoformat()}, before our charge "
            f"({asked.created_at.isoformat()}): an earlier database's id?"
        )
    return None
