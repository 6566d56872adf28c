"""The only code that writes ledger entries and balances.

`settle_batch` applies a seller's queued intents under the account lock, in one transaction:
approved deposits credit, queued charges debit when the balance covers them and otherwise fail
with `insufficient_funds` (the next one is still tried). Every applied intent gets exactly one
entry with the next per-seller `seq`. Reads and writes are set-based (a handful of statements per
batch, whatever its size): a round trip per intent would cap a hot seller near the database's
single-row commit rate.

Order inside a batch: approved deposits first, then charges by id. Crediting first can only turn
a would-be `insufficient_funds` into a success, never the reverse."""

import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ledger.locks import account_lock
from ledger.prepared import PreparedStatement

INSUFFICIENT_FUNDS = "insufficient_funds"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    deposits_applied: int = 0
    charges_succeeded: int = 0
    charges_failed: int = 0
    balance: int | None = None
    more_pending: bool = False
    # The last charge this batch took: the next batch of the same drain continues after it.
    last_charge_id: int = 0

    @property
    def intents(self) -> int:
        return self.deposits_applied + self.charges_succeeded + self.charges_failed


# Prepared once per database session (ledger/prepared.py): planning these cost PostgreSQL more
# than running them for the small batches of a busy API.
_SELECT_APPROVING_DEPOSITS = PreparedStatement(
    "ledger_settle_select_deposits",
    """SELECT id, amount FROM ledger_deposit
    WHERE seller_id = $1 AND status = 'approving' ORDER BY id LIMIT $2""",
    ["bigint", "bigint"],
)
_SELECT_QUEUED_CHARGES = PreparedStatement(
    "ledger_settle_select_charges",
    """SELECT id, amount FROM ledger_charge
    WHERE seller_id = $1 AND status = 'queued' AND id > $2 ORDER BY id LIMIT $3""",
    ["bigint", "bigint", "bigint"],
)
_INSERT_ENTRIES = PreparedStatement(
    "ledger_settle_insert_entries",
    """INSERT INTO ledger_entry
        (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at)
    SELECT $1, e.seq, e.kind, e.amount, e.balance_after - e.amount, e.balance_after, e.charge_id,
           e.deposit_id, $2
    FROM unnest($3, $4, $5, $6, $7, $8) AS e(seq, kind, amount, balance_after, charge_id, deposit_id)""",
    ["bigint", "timestamptz", "bigint[]", "text[]", "bigint[]", "bigint[]", "bigint[]", "bigint[]"],
)
_APPROVE_DEPOSITS = PreparedStatement(
    "ledger_settle_approve_deposits",
    """UPDATE ledger_deposit AS d SET status = 'approved', applied_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3) AS u(id, balance_after)
    WHERE d.id = u.id AND d.status = 'approving'""",
    ["timestamptz", "bigint[]", "bigint[]"],
)
_SUCCEED_CHARGES = PreparedStatement(
    "ledger_settle_succeed_charges",
    """UPDATE ledger_charge AS c SET status = 'succeeded', settled_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3) AS u(id, balance_after)
    WHERE c.id = u.id AND c.status = 'queued'""",
    ["timestamptz", "bigint[]", "bigint[]"],
)
_FAIL_CHARGES = PreparedStatement(
    "ledger_settle_fail_charges",
    """UPDATE ledger_charge SET status = 'failed', settled_at = $1, failure_code = $2
    WHERE id = ANY($3) AND status = 'queued'""",
    ["timestamptz", "text", "bigint[]"],
)
_UPDATE_ACCOUNT = PreparedStatement(
    "ledger_settle_update_account",
    "UPDATE ledger_account SET balance = $1, last_seq = $2, updated_at = $3 WHERE seller_id = $4",
    ["bigint", "bigint", "timestamptz", "bigint"],
)


def _array(values: list) -> str:
    """One PostgreSQL array literal (`{1,NULL,3}`), read as the prepared parameter's array type.

    psycopg2 would send a list as an `ARRAY[...]` constructor that PostgreSQL parses element by
    element: three times slower for the entry insert. Only ints, None and our own kind names go
    through here, so no element needs quoting."""
    return "{" + ",".join("NULL" if value is None else str(value) for value in values) + "}"


def settle_batch(*, seller_id: int, limit: int, after_charge_id: int = 0) -> BatchOutcome:
    """Apply up to `limit` of the seller's queued intents in one transaction.

    `after_charge_id` lets a drain continue where its previous batch stopped instead of walking
    again the index entries of every charge it just settled (dead until vacuum), which made a
    drain quadratic in its backlog. A charge committed later with a smaller id is not lost: its
    own wake-up starts a new drain from 0."""
    with transaction.atomic(), connection.cursor() as cursor:
        account = account_lock(cursor, seller_id=seller_id)
        if account is None:
            return BatchOutcome()
        _SELECT_APPROVING_DEPOSITS.execute(cursor, [seller_id, limit])
        deposits = cursor.fetchall()
        _SELECT_QUEUED_CHARGES.execute(cursor, [seller_id, after_charge_id, limit - len(deposits)])
        charges = cursor.fetchall()
        if not deposits and not charges:
            return BatchOutcome(balance=account.balance, last_charge_id=after_charge_id)

        balance, seq = account.balance, account.last_seq
        seqs, kinds, amounts, afters, charge_ids, deposit_ids = [], [], [], [], [], []
        approved_ids, approved_afters = [], []
        for deposit_id, amount in deposits:
            balance += amount
            seq += 1
            seqs.append(seq), kinds.append("deposit"), amounts.append(amount), afters.append(balance)
            charge_ids.append(None), deposit_ids.append(deposit_id)
            approved_ids.append(deposit_id), approved_afters.append(balance)

        succeeded_ids, succeeded_afters, failed_ids = [], [], []
        for charge_id, amount in charges:
            if amount > balance:
                failed_ids.append(charge_id)
                continue
            balance -= amount
            seq += 1
            seqs.append(seq), kinds.append("charge"), amounts.append(-amount), afters.append(balance)
            charge_ids.append(charge_id), deposit_ids.append(None)
            succeeded_ids.append(charge_id), succeeded_afters.append(balance)

        now = timezone.now()
        if seqs:
            arrays = [_array(values) for values in (seqs, kinds, amounts, afters, charge_ids, deposit_ids)]
            _INSERT_ENTRIES.execute(cursor, [seller_id, now, *arrays])
        if approved_ids:
            _APPROVE_DEPOSITS.execute(cursor, [now, _array(approved_ids), _array(approved_afters)])
            _expect(cursor.rowcount, len(approved_ids), "deposits")
        if succeeded_ids:
            _SUCCEED_CHARGES.execute(cursor, [now, _array(succeeded_ids), _array(succeeded_afters)])
            _expect(cursor.rowcount, len(succeeded_ids), "succeeded charges")
        if failed_ids:
            _FAIL_CHARGES.execute(cursor, [now, INSUFFICIENT_FUNDS, _array(failed_ids)])
            _expect(cursor.rowcount, len(failed_ids), "failed charges")
        _UPDATE_ACCOUNT.execute(cursor, [balance, seq, now, seller_id])

    # One line per batch, not per intent: at 20,000 charges/s a line each would cost more than
    # the posting. The batch settled every queued charge of the seller from first to last id.
    logger.info(
        "settled batch",
        extra={
            "event": "ledger.batch_settled",
            "seller_id": seller_id,
            "deposit_ids": approved_ids,
            "first_charge_id": charges[0][0] if charges else None,
            "last_charge_id": charges[-1][0] if charges else None,
            "succeeded": len(succeeded_ids),
            "failed": len(failed_ids),
            "failed_charge_ids": failed_ids[:100],
            "balance": balance,
            "last_seq": seq,
        },
    )

    return BatchOutcome(
        deposits_applied=len(approved_ids),
        charges_succeeded=len(succeeded_ids),
        charges_failed=len(failed_ids),
        balance=balance,
        more_pending=len(deposits) + len(charges) >= limit,
        last_charge_id=charges[-1][0] if charges else after_charge_id,
    )


class PostingConflictError(RuntimeError):
    """An intent changed under the account lock: something bypassed the lock order."""


def _expect(updated: int, expected: int, what: str) -> None:
    if updated != expected:
        # Rolls the whole batch back: better no effect than a partial one.
        raise PostingConflictError(f"updated {updated} {what}, expected {expected}")
