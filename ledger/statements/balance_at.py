"""A seller's balance and held credit as of a past instant, from the ledger's own sequence: the
last entry at or before it (by the `(seller, created_at, seq)` index: a seller's batches carry
strictly increasing times, so that entry is also the last by seq), less the holds posted after that
entry and by then (a post writes no entry; `charge_posted_idx`, which keeps a charge reversed
since: its post stands, its refund is an entry of its own). Two index reads, whatever the
length of the history: the posts read are at most the holds open at that entry."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from ledger.charge_lifecycle import POSTED_SQL


@dataclass(frozen=True)
class BalanceAt:
    seller_id: int
    at: datetime
    seq: int  # the last entry at or before `at`; 0 before the first
    entry_created_at: datetime | None
    balance: int  # available to spend: that entry's balance_after
    held: int


BALANCE_AT_SQL = f"""WITH head AS (
    SELECT e.seq, e.balance_after, e.held_after, e.created_at FROM ledger_entry e
     WHERE e.seller_id = %(seller)s AND e.created_at <= %(at)s
     ORDER BY e.created_at DESC, e.seq DESC LIMIT 1)
SELECT h.seq, h.balance_after, (h.held_after - coalesce(p.total, 0))::bigint, h.created_at
  FROM head h
  LEFT JOIN LATERAL (
       SELECT sum(c.amount) AS total FROM ledger_charge c
        WHERE c.seller_id = %(seller)s AND c.status IN {POSTED_SQL}
          AND c.settled_at > h.created_at AND c.settled_at <= %(at)s) p ON TRUE"""


def balance_at(*, seller_id: int, at: datetime) -> BalanceAt:
    with connection.cursor() as cursor:
        cursor.execute(BALANCE_AT_SQL, {"seller": seller_id, "at": at})
        row = cursor.fetchone()
    if row is None:  # before the seller's first entry nothing was credited or held
        return BalanceAt(seller_id, at, 0, None, 0, 0)
    return BalanceAt(seller_id, at, row[0], row[3], row[1], row[2])
