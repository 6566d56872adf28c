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


def sellers_with_oldest_intents(*, limit: int = 10) -> list[dict]:
    """The sellers whose oldest waiting intent (a queued charge or an approving deposit) has waited
    longest, with how many intents each has waiting: what an on-call engineer looks at first when
    a shard stalls. Ids grow with time, so the oldest row is found through the partial indexes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH waiting AS (
                SELECT seller_id, min(created_at) AS since, count(*) AS n
                  FROM ledger_charge WHERE status = 'queued' GROUP BY seller_id
                UNION ALL
                SELECT seller_id, min(decided_at), count(*)
                  FROM ledger_deposit WHERE status = 'approving' GROUP BY seller_id
            )
            SELECT w.seller_id, s.name, min(w.since) AS oldest, sum(w.n)::bigint AS waiting,
                   extract(epoch FROM now() - min(w.since)) AS age
              FROM waiting w JOIN core_seller s ON s.id = w.seller_id
             GROUP BY w.seller_id, s.name
             ORDER BY oldest
             LIMIT %s
            """,
            [limit],
        )
        return [
            {"seller": seller_id, "name": name, "oldest_queued_at": oldest, "waiting": waiting,
             "age_seconds": float(age)}
            for seller_id, name, oldest, waiting, age in cursor.fetchall()
        ]
