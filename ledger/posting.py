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

from ledger.locks import accounts_lock
from ledger.prepared import PreparedStatement, array_literal
from notifications.outbox import events_batch_completed, settled_events_insert

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
# than running them for the small batches of a busy API. The reads come in two forms: one seller
# (equality, so a hot seller's drain walks its partial index in order) and several (`ANY`).
_SELECT_APPROVING_DEPOSITS = PreparedStatement(
    "ledger_settle_select_deposits",
    """SELECT seller_id, id, amount FROM ledger_deposit
    WHERE seller_id = $1 AND status = 'approving' ORDER BY id LIMIT $2""",
    ["bigint", "bigint"],
)
_SELECT_QUEUED_CHARGES = PreparedStatement(
    "ledger_settle_select_charges",
    """SELECT seller_id, id, amount, batch_id FROM ledger_charge
    WHERE seller_id = $1 AND status = 'queued' AND id > $2 ORDER BY id LIMIT $3""",
    ["bigint", "bigint", "bigint"],
)
_SELECT_APPROVING_DEPOSITS_OF_SELLERS = PreparedStatement(
    "ledger_settle_select_deposits_of_sellers",
    """SELECT seller_id, id, amount FROM ledger_deposit
    WHERE seller_id = ANY($1) AND status = 'approving' ORDER BY seller_id, id LIMIT $2""",
    ["bigint[]", "bigint"],
)
_SELECT_QUEUED_CHARGES_OF_SELLERS = PreparedStatement(
    "ledger_settle_select_charges_of_sellers",
    """SELECT seller_id, id, amount, batch_id FROM ledger_charge
    WHERE seller_id = ANY($1) AND status = 'queued' ORDER BY seller_id, id LIMIT $2""",
    ["bigint[]", "bigint"],
)
_INSERT_ENTRIES = PreparedStatement(
    "ledger_settle_insert_entries",
    """INSERT INTO ledger_entry
        (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at)
    SELECT e.seller_id, e.seq, e.kind, e.amount, e.balance_after - e.amount, e.balance_after, e.charge_id,
           e.deposit_id, $1
    FROM unnest($2, $3, $4, $5, $6, $7, $8)
        AS e(seller_id, seq, kind, amount, balance_after, charge_id, deposit_id)""",
    ["timestamptz", "bigint[]", "bigint[]", "text[]", "bigint[]", "bigint[]", "bigint[]", "bigint[]"],
)
# The three updates below name each row by seller and id, though the id alone would do, so that
# every index the planner may pick is an exact lookup. With the id alone it may take the partial
# index of pending rows, `(seller_id, id) WHERE status = ...`, whenever its statistics say that
# index is tiny (pending rows are settled within a second, so at any ANALYZE it is), and walk all
# of it once per row; between vacuums that index also holds every row settled since the last
# one, so each settle would read more than the one before.
_APPROVE_DEPOSITS = PreparedStatement(
    "ledger_settle_approve_deposits_by_seller",
    """UPDATE ledger_deposit AS d SET status = 'approved', applied_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3, $4) AS u(seller_id, id, balance_after)
    WHERE d.seller_id = u.seller_id AND d.id = u.id AND d.status = 'approving'""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)
_SUCCEED_CHARGES = PreparedStatement(
    "ledger_settle_succeed_charges_by_seller",
    """UPDATE ledger_charge AS c SET status = 'succeeded', settled_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3, $4) AS u(seller_id, id, balance_after)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.status = 'queued'""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)
_FAIL_CHARGES = PreparedStatement(
    "ledger_settle_fail_charges_by_seller",
    """UPDATE ledger_charge AS c SET status = 'failed', settled_at = $1, failure_code = $2
    FROM unnest($3, $4) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.status = 'queued'""",
    ["timestamptz", "text", "bigint[]", "bigint[]"],
)
# The outcomes of a charge batch's charges are counted here, by the settle that settles them: it
# holds the seller's account lock, which every writer of the batch's charges holds, so the counts
# stay exact and nothing else contends for the row. The settle of the last one completes the batch.
_COUNT_BATCH_OUTCOMES = PreparedStatement(
    "ledger_settle_count_batch_outcomes",
    """UPDATE ledger_chargebatch AS b SET
        succeeded = b.succeeded + u.succeeded, failed = b.failed + u.failed,
        succeeded_amount = b.succeeded_amount + u.amount,
        status = CASE WHEN b.succeeded + b.failed + u.succeeded + u.failed = b.valid_rows
                      THEN 'completed' ELSE b.status END,
        completed_at = CASE WHEN b.succeeded + b.failed + u.succeeded + u.failed = b.valid_rows
                            THEN $1 END
    FROM unnest($2, $3, $4, $5) AS u(id, succeeded, failed, amount)
    WHERE b.id = u.id AND b.status = 'queued'
    RETURNING b.id, b.seller_id, b.status, b.succeeded, b.failed""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]", "bigint[]"],
)
_UPDATE_ACCOUNTS = PreparedStatement(
    "ledger_settle_update_accounts",
    """UPDATE ledger_account AS a SET balance = u.balance, last_seq = u.last_seq, updated_at = $1
    FROM unnest($2, $3, $4) AS u(seller_id, balance, last_seq)
    WHERE a.seller_id = u.seller_id""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)


def settle_batch(*, seller_id: int, limit: int, after_charge_id: int = 0) -> BatchOutcome:
    """Apply up to `limit` of the seller's queued intents in one transaction.

    `after_charge_id` lets a drain continue where its previous batch stopped instead of walking
    again the index entries of every charge it just settled (dead until vacuum), which made a
    drain quadratic in its backlog. A charge committed later with a smaller id is not lost: its
    own wake-up starts a new drain from 0."""
    outcomes = _settle([seller_id], limit=limit, after_charge_id=after_charge_id)
    return outcomes.get(seller_id) or BatchOutcome(last_charge_id=after_charge_id)


def settle_sellers_batch(*, seller_ids: list[int], limit: int) -> dict[int, BatchOutcome]:
    """Apply up to `limit` queued intents of several sellers, in one transaction: a shard task's
    sellers, each with a few charges, cost one transaction instead of one each. The accounts are
    locked in ascending seller id; each seller's intents are applied exactly as `settle_batch`
    would. When the batch is full every outcome says `more_pending`, and the caller drains those
    sellers one by one."""
    return _settle(sorted(set(seller_ids)), limit=limit, after_charge_id=0)


def _settle(seller_ids: list[int], *, limit: int, after_charge_id: int) -> dict[int, BatchOutcome]:
    with transaction.atomic(), connection.cursor() as cursor:
        accounts = accounts_lock(cursor, seller_ids=seller_ids)
        if not accounts:
            return {}
        ids = sorted(accounts)
        if len(ids) == 1:
            _SELECT_APPROVING_DEPOSITS.execute(cursor, [ids[0], limit])
            deposits = cursor.fetchall()
            _SELECT_QUEUED_CHARGES.execute(cursor, [ids[0], after_charge_id, limit - len(deposits)])
        else:
            _SELECT_APPROVING_DEPOSITS_OF_SELLERS.execute(cursor, [array_literal(ids), limit])
            deposits = cursor.fetchall()
            _SELECT_QUEUED_CHARGES_OF_SELLERS.execute(cursor, [array_literal(ids), limit - len(deposits)])
        charges = cursor.fetchall()
        more_pending = len(deposits) + len(charges) >= limit
        if not deposits and not charges:
            return {sid: BatchOutcome(balance=accounts[sid].balance, last_charge_id=after_charge_id) for sid in ids}

        walks = {sid: _Walk(accounts[sid]) for sid in ids}
        for seller_id, deposit_id, amount in deposits:  # deposits first: they can only help
            walks[seller_id].deposit(deposit_id, amount)
        for seller_id, charge_id, amount, batch_id in charges:  # then charges, by id within each seller
            walks[seller_id].charge(charge_id, amount, batch_id)
        changed = [walks[sid] for sid in ids if walks[sid].entries]
        failed = [(walk.seller_id, charge_id) for walk in walks.values() for charge_id in walk.failed_ids]

        now = timezone.now()
        if changed:
            # seller, seq, kind, amount, balance_after, charge, deposit
            entries = [entry for walk in changed for entry in walk.entries]
            _INSERT_ENTRIES.execute(cursor, [now, *_columns(entries)])
        approved = [(walk.seller_id, d, after) for walk in changed for d, after in walk.approved]
        if approved:
            _APPROVE_DEPOSITS.execute(cursor, [now, *_columns(approved)])
            _expect(cursor.rowcount, len(approved), "deposits")
        succeeded = [(walk.seller_id, c, after) for walk in changed for c, after in walk.succeeded]
        if succeeded:
            _SUCCEED_CHARGES.execute(cursor, [now, *_columns(succeeded)])
            _expect(cursor.rowcount, len(succeeded), "succeeded charges")
        if failed:
            _FAIL_CHARGES.execute(cursor, [now, INSUFFICIENT_FUNDS, *_columns(failed)])
            _expect(cursor.rowcount, len(failed), "failed charges")
        batches = [(b, *outcome) for walk in walks.values() for b, outcome in walk.batch_outcomes.items()]
        completed_batches = []
        if batches:
            _COUNT_BATCH_OUTCOMES.execute(cursor, [now, *_columns(batches)])
            _expect(cursor.rowcount, len(batches), "charge batches")
            completed_batches = [row for row in cursor.fetchall() if row[2] == "completed"]
        if changed:
            _UPDATE_ACCOUNTS.execute(cursor, [now, *_columns([(w.seller_id, w.balance, w.seq) for w in changed])])
            _expect(cursor.rowcount, len(changed), "accounts")
        # The batch's events (charge.succeeded/failed, deposit.approved, balance.low) commit with it.
        settled_events_insert(
            cursor,
            now=now,
            intents=[event for walk in walks.values() for event in walk.events],
            balances=[(w.seller_id, w.balance_before, w.balance) for w in changed],
        )
        for batch_id, seller_id, batch_status, batch_succeeded, batch_failed in completed_batches:
            events_batch_completed(
                seller_id=seller_id,
                batch_id=batch_id,
                status=batch_status,
                succeeded=batch_succeeded,
                failed=batch_failed,
            )

    outcomes = {}
    for sid in ids:
        walk = walks[sid]
        if walk.taken_charge_ids or walk.approved:
            # One line per seller and batch, not per intent: a line each would cost more than
            # the posting. The batch settled every queued charge of the
            # seller from first to last id.
            logger.info(
                "settled batch",
                extra={
                    "event": "ledger.batch_settled",
                    "seller_id": sid,
                    "deposit_ids": [d for d, _ in walk.approved],
                    "first_charge_id": walk.taken_charge_ids[0] if walk.taken_charge_ids else None,
                    "last_charge_id": walk.taken_charge_ids[-1] if walk.taken_charge_ids else None,
                    "succeeded": len(walk.succeeded),
                    "failed": len(walk.failed_ids),
                    "failed_charge_ids": walk.failed_ids[:100],
                    "balance": walk.balance,
                    "last_seq": walk.seq,
                },
            )
        outcomes[sid] = BatchOutcome(
            deposits_applied=len(walk.approved),
            charges_succeeded=len(walk.succeeded),
            charges_failed=len(walk.failed_ids),
            balance=walk.balance,
            more_pending=more_pending,
            last_charge_id=walk.taken_charge_ids[-1] if walk.taken_charge_ids else after_charge_id,
        )
    return outcomes


class _Walk:
    """One seller's intents applied in memory, in order, from its locked account."""

    def __init__(self, account):
        self.seller_id, self.balance, self.seq = account.seller_id, account.balance, account.last_seq
        self.balance_before = account.balance
        self.entries: list[tuple] = []  # (seller, seq, kind, amount, balance_after, charge, deposit)
        self.approved: list[tuple[int, int]] = []  # (deposit id, balance after)
        self.succeeded: list[tuple[int, int]] = []  # (charge id, balance after)
        self.failed_ids: list[int] = []
        self.taken_charge_ids: list[int] = []
        self.batch_outcomes: dict[int, list[int]] = {}  # batch id -> [succeeded, failed, amount]
        # (seller, event type, charge, deposit, amount, balance after, failure code), in order.
        self.events: list[tuple] = []

    def deposit(self, deposit_id: int, amount: int) -> None:
        self.balance += amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "deposit", amount, self.balance, None, deposit_id))
        self.approved.append((deposit_id, self.balance))
        self.events.append((self.seller_id, "deposit.approved", None, deposit_id, amount, self.balance, None))

    def charge(self, charge_id: int, amount: int, batch_id: int | None = None) -> None:
        self.taken_charge_ids.append(charge_id)
        outcome = None if batch_id is None else self.batch_outcomes.setdefault(batch_id, [0, 0, 0])
        if amount > self.balance:
            self.failed_ids.append(charge_id)  # insufficient_funds; the next charge is still tried
            if outcome is not None:
                outcome[1] += 1
            self.events.append((self.seller_id, "charge.failed", charge_id, None, amount, None, INSUFFICIENT_FUNDS))
            return
        if outcome is not None:
            outcome[0] += 1
            outcome[2] += amount
        self.balance -= amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "charge", -amount, self.balance, charge_id, None))
        self.succeeded.append((charge_id, self.balance))
        self.events.append((self.seller_id, "charge.succeeded", charge_id, None, amount, self.balance, None))


class PostingConflictError(RuntimeError):
    """An intent changed under the account lock: something bypassed the lock order."""


def _columns(rows: list[tuple]) -> list[str]:
    """One array literal per column of `rows`, for the statements' `unnest(...)`."""
    return [array_literal(column) for column in zip(*rows, strict=True)]


def _expect(updated: int, expected: int, what: str) -> None:
    if updated != expected:
        # Rolls the whole batch back: better no effect than a partial one.
        raise PostingConflictError(f"updated {updated} {what}, expected {expected}")
