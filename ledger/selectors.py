"""Reads. Every query a seller can reach is scoped by its seller."""

from django.db.models import QuerySet

from core.models import Seller
from ledger.models import Charge, ChargeBatch, Deposit, Entry


def _scoped(qs: QuerySet, seller: Seller | None, seller_filter: int | None = None) -> QuerySet:
    if seller is not None:
        return qs.filter(seller=seller)
    if seller_filter is not None:
        return qs.filter(seller_id=seller_filter)
    return qs


def deposit_list(*, seller: Seller | None, seller_filter: int | None = None) -> QuerySet[Deposit]:
    return _scoped(Deposit.objects.all(), seller, seller_filter)


def charge_list(*, seller: Seller | None, seller_filter: int | None = None) -> QuerySet[Charge]:
    return _scoped(Charge.objects.all(), seller, seller_filter)


def batch_list(*, seller: Seller | None, seller_filter: int | None = None) -> QuerySet[ChargeBatch]:
    return _scoped(ChargeBatch.objects.all(), seller, seller_filter)


def entry_list(*, seller: Seller | None, seller_filter: int | None = None) -> QuerySet[Entry]:
    return _scoped(Entry.objects.all(), seller, seller_filter)


def sellers_with_stale_intents(*, older_than_seconds: float, limit: int = 1000) -> list[int]:
    """Sellers whose oldest queued intent waited longer than the threshold (the sweeper's input)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT seller_id FROM ledger_charge
             WHERE status = 'queued' AND created_at < now() - make_interval(secs => %s)
            UNION
            SELECT seller_id FROM ledger_deposit
             WHERE status = 'approving' AND decided_at < now() - make_interval(secs => %s)
            LIMIT %s
            """,
            [older_than_seconds, older_than_seconds, limit],
        )
        return [row[0] for row in cursor.fetchall()]
