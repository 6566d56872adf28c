"""Conflicts between the provider's word and an outcome we applied: the only code that changes a
`ProviderConflict`'s status.

A **late success**: the provider says it delivered a top-up whose charge we failed and released
(a callback, a lookup or the daily close finds it COMPLETED). We never apply it silently, neither
as a second outcome of the charge nor as money: it is recorded here, listed in ops/queues and
alerted on in the metrics, and an admin settles it, once:

    open --conflict_debit_request--> debiting --(the seller's settle, ledger/posting.py)--> debited
      ^                                  |
      +-------- balance too low ---------+   (`refusal` says so; the admin may ask again later)
    open --conflict_book_loss--> loss_booked   (no money moves: the platform bears the top-up)

The debit is an `adjustment` entry of the charge's price, written by the settle under the
seller's lock in the seller's sequence (a worker, never the web request), never taking the
balance below zero. Asking again for what was already done changes nothing."""

import json
from dataclasses import dataclass

from django.db import connection, transaction

from core.db.prepared import PreparedStatement, array_literal
from ledger import events
from ledger.charge_lifecycle import DONE, FAILED
from ledger.models import ProviderConflict

OPEN, DEBITING, DEBITED, LOSS_BOOKED = (
    ProviderConflict.Status.OPEN,
    ProviderConflict.Status.DEBITING,
    ProviderConflict.Status.DEBITED,
    ProviderConflict.Status.LOSS_BOOKED,
)
UNSETTLED_SQL = f"('{OPEN}', '{DEBITING}')"
DEBITING_SQL = f"status = '{DEBITING}'"  # the condition of conflict_debiting_idx


@dataclass(frozen=True)
class LateSuccess:
    charge_id: int
    detail: str
    answered: dict


# Prepared (core/db/prepared.py): every successful callback runs it, mostly for one charge that is
# no conflict at all, and planning it cost PostgreSQL more than running it.
_RECORD_LATE_SUCCESSES = PreparedStatement(
    "ledger_record_late_successes",
    f"""INSERT INTO ledger_providerconflict AS k
           (charge_id, seller_id, kind, status, amount, detail, answered, first_seen_at, last_seen_at, refusal)
     SELECT c.id, c.seller_id, 'late_success', '{OPEN}', c.amount, u.detail, u.answered::jsonb,
            clock_timestamp(), clock_timestamp(), ''
       FROM unnest($1, $2, $3) AS u(id, detail, answered)
       JOIN ledger_charge c ON c.id = u.id
      WHERE c.status = '{FAILED}' AND c.stage = '{DONE}' AND c.outcome IS NOT NULL
     ON CONFLICT (charge_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
     RETURNING k.charge_id, (xmax = 0)""",
    ["bigint[]", "text[]", "text[]"],
)


def record_late_successes(found: list[LateSuccess]) -> list[int]:
    """Record each success the provider reports for a charge we failed after its answer (a charge
    never sent, or still open, is not a conflict). Seen again: only `last_seen_at` moves. Answers
    the charges recorded for the first time."""
    if not found:
        return []
    with connection.cursor() as cursor:
        _RECORD_LATE_SUCCESSES.execute(
            cursor,
            [
                array_literal([f.charge_id for f in found]),
                [f.detail for f in found],
                [json.dumps(f.answered) for f in found],
            ],
        )
        return sorted(charge_id for charge_id, inserted in cursor.fetchall() if inserted)


class ConflictNotFoundError(LookupError):
    pass


class ConflictStateError(RuntimeError):
    """The conflict is settled (or being settled) otherwise than asked."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def conflict_debit_request(*, charge_id: int, user_id: int | None) -> ProviderConflict:
    """open -> debiting: the seller's settle debits the charge's price (ledger/posting.py), woken
    after commit. Already debiting or debited: nothing changes."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE ledger_providerconflict SET status = '{DEBITING}', requested_by_id = %s,
                       requested_at = clock_timestamp(), refusal = ''
                 WHERE charge_id = %s AND status = '{OPEN}' RETURNING seller_id""",
                [user_id, charge_id],
            )
            moved = cursor.fetchone()
        if moved:
            events.intents_recorded(seller_id=moved[0])
        conflict = _get(charge_id)
    if conflict.status not in (DEBITING, DEBITED):
        raise ConflictStateError(conflict.status)
    return conflict


def conflict_book_loss(*, charge_id: int, user_id: int | None) -> ProviderConflict:
    """open -> loss_booked: the platform bears the top-up; the seller's ledger is not touched.
    Already booked: nothing changes."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_providerconflict SET status = '{LOSS_BOOKED}', requested_by_id = %s,
                   requested_at = clock_timestamp(), settled_at = clock_timestamp(), refusal = ''
             WHERE charge_id = %s AND status = '{OPEN}'""",
            [user_id, charge_id],
        )
    conflict = _get(charge_id)
    if conflict.status != LOSS_BOOKED:
        raise ConflictStateError(conflict.status)
    return conflict


def _get(charge_id: int) -> ProviderConflict:
    try:
        return ProviderConflict.objects.get(charge_id=charge_id)
    except ProviderConflict.DoesNotExist as exc:
        raise ConflictNotFoundError(charge_id) from exc


# -- The settle's moves (ledger/posting.py), under the seller's lock, in its transaction.


def debited(cursor, *, now, rows: list[tuple[int, int]]) -> int:
    """debiting -> debited: the settle wrote the adjustment. rows: (seller, charge)."""
    return _settle_moves(
        cursor,
        f"""UPDATE ledger_providerconflict AS k SET status = '{DEBITED}', settled_at = %s
         FROM unnest(%s::bigint[], %s::bigint[]) AS u(seller_id, id)
         WHERE k.seller_id = u.seller_id AND k.charge_id = u.id AND k.status = '{DEBITING}'""",
        now,
        rows,
    )


def debit_refused(cursor, *, rows: list[tuple[int, int, str]]) -> int:
    """debiting -> open: the balance did not cover the debit; `refusal` says so. rows: (seller,
    charge, refusal)."""
    if not rows:
        return 0
    cursor.execute(
        f"""UPDATE ledger_providerconflict AS k SET status = '{OPEN}', refusal = u.refusal
         FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(seller_id, id, refusal)
         WHERE k.seller_id = u.seller_id AND k.charge_id = u.id AND k.status = '{DEBITING}'""",
        [list(col) for col in zip(*rows, strict=True)],
    )
    return cursor.rowcount


def _settle_moves(cursor, sql: str, now, rows: list[tuple[int, int]]) -> int:
    if not rows:
        return 0
    cursor.execute(sql, [now, [s for s, _ in rows], [c for _, c in rows]])
    return cursor.rowcount


def conflicts_report() -> dict:
    """Unsettled conflicts (ops/queues, the metrics): how many, the oldest's age, and how many a
    debit was refused for (the balance did not cover it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(*), extract(epoch FROM clock_timestamp() - min(first_seen_at)),
                      count(*) FILTER (WHERE refusal <> ''), count(*) FILTER (WHERE status = '{DEBITING}')
                 FROM ledger_providerconflict WHERE status IN {UNSETTLED_SQL}"""
        )
        count, age, refused, debiting = cursor.fetchone()
    return {
        "late_successes_open": count,
        "oldest_age_seconds": round(float(age or 0), 3),
        "debit_refused": refused,
        "debiting": debiting,
    }
