"""Reads. Every query a seller can reach is scoped by its seller."""

import heapq
from collections.abc import Iterator
from operator import itemgetter
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import QuerySet

from core.db.prepared import PreparedStatement
from core.models import Seller
from ledger.charge_lifecycle import ANSWERED_SQL, QUEUED_SQL, REVERSAL_WAITING_SQL
from ledger.conflicts import DEBITING_SQL
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


def batch_rejection_reason(batch: ChargeBatch) -> str:
    """One sentence for a `rejected` batch: why nothing of it was queued."""
    first = batch.errors[0] if batch.errors else None
    if first is None or first["field"] == "file":
        return first["message"] if first else "The file cannot be imported."
    return (
        f"None of the {batch.invalid_rows} rows is valid; nothing was queued. First error: line {first['line']}, "
        f"{first['field']}: {first['message']}"
    )


RESULT_COLUMNS = ["charge_id", "status", "failure_code", "balance_after", "line", "error"]
# Two index-ordered reads merged here: PostgreSQL would sort a UNION ALL of a million rows before
# sending the first one.
_RESULT_CHARGES = """
    SELECT batch_line, phone_number, amount, reference, id, status, failure_code, balance_after, NULL
      FROM ledger_charge WHERE batch_id = %s ORDER BY batch_line
"""
_RESULT_REJECTED = """
    SELECT line, phone_number, amount, reference, NULL, 'invalid', NULL, NULL, error
      FROM ledger_chargebatchrejectedrow WHERE batch_id = %s ORDER BY line
"""


def batch_results(*, batch: ChargeBatch) -> tuple[list[str], Iterator[tuple]]:
    """The results file's header and rows: the input columns in the input's order, then the
    outcome, one row per input row in file order (rejected rows as `invalid` with their error).
    Valid rows show the phone number as charged (E.164). Streams from server-side cursors inside
    one read-only transaction, so memory stays flat and both reads see the same moment."""
    header = list(batch.columns) + RESULT_COLUMNS
    positions = {"phone_number": 1, "amount": 2, "reference": 3}
    picks = [positions[name] for name in batch.columns]

    def read(sql: str) -> Iterator[tuple]:
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, [batch.pk])
            while records := cursor.fetchmany(2000):
                yield from records

    def rows() -> Iterator[tuple]:
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            merged = heapq.merge(read(_RESULT_CHARGES), read(_RESULT_REJECTED), key=itemgetter(0))
            for record in merged:
                line, charge_id, state, failure, balance_after, error = record[0], *record[4:]
                yield (*(record[i] for i in picks), charge_id, state, failure, balance_after, line, error)

    return header, rows()


def sellers_with_stale_intents(*, older_than_seconds: float, limit: int = 1000) -> list[int]:
    """Sellers whose oldest intent waiting for their settle (a queued charge, a provider answer to
    apply, an approved deposit, a reversal to refund, a late success's debit) waited longer than
    the threshold (the sweeper's input)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT seller_id FROM ledger_charge
             WHERE {QUEUED_SQL} AND created_at < now() - make_interval(secs => %s)
            UNION
            SELECT seller_id FROM ledger_charge
             WHERE {ANSWERED_SQL} AND outcome_at < now() - make_interval(secs => %s)
            UNION
            SELECT seller_id FROM ledger_deposit
             WHERE status = 'approving' AND decided_at < now() - make_interval(secs => %s)
            UNION
            SELECT seller_id FROM ledger_charge
             WHERE {REVERSAL_WAITING_SQL} AND reversal_recorded_at < now() - make_interval(secs => %s)
            UNION
            SELECT seller_id FROM ledger_providerconflict
             WHERE {DEBITING_SQL} AND requested_at < now() - make_interval(secs => %s)
            LIMIT %s
            """,
            [*[older_than_seconds] * 5, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def sellers_with_oldest_intents(*, limit: int = 10) -> list[dict]:
    """The sellers whose oldest waiting intent (a queued charge or an approving deposit) has waited
    longest, with how many intents each has waiting: what an on-call engineer looks at first when
    a shard stalls. Ids grow with time, so the oldest row is found through the partial indexes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH waiting AS (
                SELECT seller_id, min(created_at) AS since, count(*) AS n
                  FROM ledger_charge WHERE {QUEUED_SQL} GROUP BY seller_id
                UNION ALL
                SELECT seller_id, min(outcome_at), count(*)
                  FROM ledger_charge WHERE {ANSWERED_SQL} GROUP BY seller_id
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
            {
                "seller": seller_id,
                "name": name,
                "oldest_queued_at": oldest,
                "waiting": waiting,
                "age_seconds": float(age),
            }
            for seller_id, name, oldest, waiting, age in cursor.fetchall()
        ]


class Waiting(NamedTuple):
    age: float  # seconds the seller's oldest waiting intent has waited
    first: tuple  # the seller's first waiting charge and deposit ids: unchanged means no progress


def _first_per_seller(name: str, table: str, waiting: str) -> str:
    step = f"SELECT seller_id, id FROM {table} WHERE {waiting}"
    return f"""{name} AS (
        ({step} ORDER BY seller_id, id LIMIT 1)
         UNION ALL
         SELECT next.seller_id, next.id FROM {name} AS prev, LATERAL (
             {step} AND seller_id > prev.seller_id ORDER BY seller_id, id LIMIT 1) AS next)"""


# Prepared (core/db/prepared.py): each shard worker's watch runs it every second, and planning its
# six index descents cost PostgreSQL a few milliseconds each time.
_SELLERS_WAITING = PreparedStatement(
    "ledger_sellers_waiting",
    f"""
    WITH RECURSIVE {_first_per_seller("charges_waiting", "ledger_charge", QUEUED_SQL)},
         {_first_per_seller("answers_waiting", "ledger_charge", ANSWERED_SQL)},
         {_first_per_seller("deposits_waiting", "ledger_deposit", "status = 'approving'")}
    SELECT w.seller_id, 'charge', w.id, extract(epoch FROM now() - c.created_at)
      FROM charges_waiting w JOIN ledger_charge c ON c.id = w.id
    UNION ALL
    SELECT w.seller_id, 'answer', w.id, extract(epoch FROM now() - c.outcome_at)
      FROM answers_waiting w JOIN ledger_charge c ON c.id = w.id
    UNION ALL
    SELECT w.seller_id, 'deposit', w.id, extract(epoch FROM now() - d.decided_at)
      FROM deposits_waiting w JOIN ledger_deposit d ON d.id = w.id
    """,
    [],
)


def sellers_waiting() -> dict[int, Waiting]:
    """Every seller with a queued charge, a provider answer to apply or an approving deposit (shard recovery, the stuck-seller
    watch and the per-shard stall metrics). A loose index scan over the partial indexes that hold
    only waiting intents: one short index descent per waiting seller, however long its backlog, so
    it stays cheap under a million-row import. A seller's smallest waiting id is taken as its
    oldest (ids grow with time)."""
    from django.db import connection

    with connection.cursor() as cursor:
        _SELLERS_WAITING.execute(cursor, [])
        waiting: dict[int, Waiting] = {}
        for seller_id, kind, first_id, age in cursor.fetchall():
            known = waiting.get(seller_id, Waiting(0.0, ()))
            waiting[seller_id] = Waiting(max(known.age, float(age), 0.0), (*known.first, (kind, first_id)))
        return waiting
