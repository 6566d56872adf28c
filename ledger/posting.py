"""The only code that writes ledger entries, balances and holds.

`settle_batch` applies a seller's waiting intents under the account lock, in one transaction:
- provider answers recorded on reserved charges (`outcome`): a success posts the hold (the charge
  succeeds; `held` goes down), a failure releases it (a `release` entry gives the credit back);
- approved deposits credit;
- queued charges are reserved when the available balance covers them (a `charge` entry debits
  the balance and `held` goes up; the fulfilment workers then send them to the provider) and
  otherwise fail with `insufficient_funds` (the next one is still tried).
Every applied intent gets exactly one entry with the next per-seller `seq`, except a posted hold,
which changes `held` only: its debit is the entry written when it was reserved. Reads and writes
are set-based (a handful of statements per batch, whatever its size): a round trip per intent
would cap a hot seller near the database's single-row commit rate.

Order inside a batch: answers first, then approved deposits, then charges by id. Releasing and
crediting first can only turn a would-be `insufficient_funds` into a reservation, never the
reverse."""

import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from ledger import events
from ledger.locks import accounts_lock
from ledger.prepared import PreparedStatement, array_literal
from notifications.outbox import events_batch_completed, settled_events_insert

INSUFFICIENT_FUNDS = "insufficient_funds"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutcome:
    deposits_applied: int = 0
    charges_reserved: int = 0
    charges_succeeded: int = 0
    charges_failed: int = 0
    balance: int | None = None
    held: int | None = None
    more_pending: bool = False
    # The last queued and answered charges this batch took: the next batch of the same drain
    # continues after them.
    last_charge_id: int = 0
    last_answered_id: int = 0

    @property
    def intents(self) -> int:
        return self.deposits_applied + self.charges_reserved + self.charges_succeeded + self.charges_failed


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
    WHERE seller_id = $1 AND stage = 'queued' AND id > $2 ORDER BY id LIMIT $3""",
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
    WHERE seller_id = ANY($1) AND stage = 'queued' ORDER BY seller_id, id LIMIT $2""",
    ["bigint[]", "bigint"],
)
# Reserved charges with the provider's answer recorded, to post or release.
_SELECT_ANSWERED_CHARGES = PreparedStatement(
    "ledger_settle_select_answered",
    """SELECT seller_id, id, amount, batch_id, outcome, outcome_code, balance_after FROM ledger_charge
    WHERE seller_id = $1 AND outcome IS NOT NULL AND stage <> 'done' AND id > $2 ORDER BY id LIMIT $3""",
    ["bigint", "bigint", "bigint"],
)
_SELECT_ANSWERED_CHARGES_OF_SELLERS = PreparedStatement(
    "ledger_settle_select_answered_of_sellers",
    """SELECT seller_id, id, amount, batch_id, outcome, outcome_code, balance_after FROM ledger_charge
    WHERE seller_id = ANY($1) AND outcome IS NOT NULL AND stage <> 'done' ORDER BY seller_id, id LIMIT $2""",
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
_RESERVE_CHARGES = PreparedStatement(
    "ledger_settle_reserve_charges",
    """UPDATE ledger_charge AS c SET stage = 'reserved', reserved_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3, $4) AS u(seller_id, id, balance_after)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.stage = 'queued'""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)
_FAIL_CHARGES = PreparedStatement(
    "ledger_settle_fail_charges_by_seller",
    """UPDATE ledger_charge AS c SET status = 'failed', stage = 'done', settled_at = $1, failure_code = $2
    FROM unnest($3, $4) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.stage = 'queued'""",
    ["timestamptz", "text", "bigint[]", "bigint[]"],
)
_POST_CHARGES = PreparedStatement(
    "ledger_settle_post_charges",
    """UPDATE ledger_charge AS c SET status = 'succeeded', stage = 'done', settled_at = $1
    FROM unnest($2, $3) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.outcome = 'succeeded' AND c.stage <> 'done'""",
    ["timestamptz", "bigint[]", "bigint[]"],
)
_RELEASE_CHARGES = PreparedStatement(
    "ledger_settle_release_charges",
    """UPDATE ledger_charge AS c SET status = 'failed', stage = 'done', settled_at = $1,
        failure_code = c.outcome_code, balance_after = NULL
    FROM unnest($2, $3) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.outcome = 'failed' AND c.stage <> 'done'""",
    ["timestamptz", "bigint[]", "bigint[]"],
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
    """UPDATE ledger_account AS a SET balance = u.balance, held = u.held, last_seq = u.last_seq, updated_at = $1
    FROM unnest($2, $3, $4, $5) AS u(seller_id, balance, held, last_seq)
    WHERE a.seller_id = u.seller_id""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]", "bigint[]"],
)


def settle_batch(*, seller_id: int, limit: int, after_charge_id: int = 0, after_answered_id: int = 0) -> BatchOutcome:
    """Apply up to `limit` of the seller's waiting intents in one transaction.

    `after_charge_id` and `after_answered_id` let a drain continue where its previous batch
    stopped instead of walking again the index entries of every charge it just settled (dead
    until vacuum), which made a drain quadratic in its backlog. A charge committed (or answered)
    later with a smaller id is not lost: its own wake-up starts a new drain from 0."""
    outcomes = _settle([seller_id], limit=limit, after_charge_id=after_charge_id, after_answered_id=after_answered_id)
    return outcomes.get(seller_id) or BatchOutcome(last_charge_id=after_charge_id, last_answered_id=after_answered_id)


def settle_sellers_batch(*, seller_ids: list[int], limit: int) -> dict[int, BatchOutcome]:
    """Apply up to `limit` waiting intents of several sellers, in one transaction: a shard task's
    sellers, each with a few charges, cost one transaction instead of one each. The accounts are
    locked in ascending seller id; each seller's intents are applied exactly as `settle_batch`
    would. When the batch is full every outcome says `more_pending`, and the caller drains those
    sellers one by one."""
    return _settle(sorted(set(seller_ids)), limit=limit, after_charge_id=0, after_answered_id=0)


def _settle(
    seller_ids: list[int], *, limit: int, after_charge_id: int, after_answered_id: int
) -> dict[int, BatchOutcome]:
    with transaction.atomic(), connection.cursor() as cursor:
        accounts = accounts_lock(cursor, seller_ids=seller_ids)
        if not accounts:
            return {}
        ids = sorted(accounts)
        if len(ids) == 1:
            _SELECT_ANSWERED_CHARGES.execute(cursor, [ids[0], after_answered_id, limit])
            answered = cursor.fetchall()
            _SELECT_APPROVING_DEPOSITS.execute(cursor, [ids[0], limit - len(answered)])
            deposits = cursor.fetchall()
            _SELECT_QUEUED_CHARGES.execute(cursor, [ids[0], after_charge_id, limit - len(answered) - len(deposits)])
        else:
            sellers = array_literal(ids)
            _SELECT_ANSWERED_CHARGES_OF_SELLERS.execute(cursor, [sellers, limit])
            answered = cursor.fetchall()
            _SELECT_APPROVING_DEPOSITS_OF_SELLERS.execute(cursor, [sellers, limit - len(answered)])
            deposits = cursor.fetchall()
            _SELECT_QUEUED_CHARGES_OF_SELLERS.execute(cursor, [sellers, limit - len(answered) - len(deposits)])
        charges = cursor.fetchall()
        more_pending = len(answered) + len(deposits) + len(charges) >= limit
        if not answered and not deposits and not charges:
            return {
                sid: BatchOutcome(
                    balance=accounts[sid].balance,
                    held=accounts[sid].held,
                    last_charge_id=after_charge_id,
                    last_answered_id=after_answered_id,
                )
                for sid in ids
            }

        walks = {sid: _Walk(accounts[sid]) for sid in ids}
        for seller_id, charge_id, amount, batch_id, outcome, code, balance_after in answered:  # they can only help
            walks[seller_id].answer(charge_id, amount, batch_id, outcome, code, balance_after)
        for seller_id, deposit_id, amount in deposits:  # deposits next: they can only help too
            walks[seller_id].deposit(deposit_id, amount)
        for seller_id, charge_id, amount, batch_id in charges:  # then charges, by id within each seller
            walks[seller_id].charge(charge_id, amount, batch_id)
        changed = [walks[sid] for sid in ids if walks[sid].changed]
        failed = [(walk.seller_id, charge_id) for walk in walks.values() for charge_id in walk.failed_ids]

        now = timezone.now()
        entries = [entry for walk in changed for entry in walk.entries]
        if entries:  # seller, seq, kind, amount, balance_after, charge, deposit
            _INSERT_ENTRIES.execute(cursor, [now, *_columns(entries)])
        _update(cursor, _POST_CHARGES, now, [(w.seller_id, c) for w in changed for c in w.posted], "posted charges")
        _update(
            cursor, _RELEASE_CHARGES, now, [(w.seller_id, c) for w in changed for c in w.released], "released charges"
        )
        _update(cursor, _APPROVE_DEPOSITS, now, [(w.seller_id, *d) for w in changed for d in w.approved], "deposits")
        _update(cursor, _RESERVE_CHARGES, now, [(w.seller_id, *c) for w in changed for c in w.reserved], "reserved")
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
            _UPDATE_ACCOUNTS.execute(
                cursor, [now, *_columns([(w.seller_id, w.balance, w.held, w.seq) for w in changed])]
            )
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
        reserved_ids = [charge_id for walk in changed for charge_id, _ in walk.reserved]
        if reserved_ids:
            events.charges_reserved(charge_ids=reserved_ids)  # sent to the provider after commit

    outcomes = {}
    for sid in ids:
        walk = walks[sid]
        if walk.changed or walk.failed_ids:
            # One line per seller and batch, not per intent: a line each would cost more than
            # the posting.
            logger.info(
                "settled batch",
                extra={
                    "event": "ledger.batch_settled",
                    "seller_id": sid,
                    "deposit_ids": [d for d, _ in walk.approved],
                    "first_charge_id": walk.taken_charge_ids[0] if walk.taken_charge_ids else None,
                    "last_charge_id": walk.taken_charge_ids[-1] if walk.taken_charge_ids else None,
                    "reserved": len(walk.reserved),
                    "posted": len(walk.posted),
                    "released": len(walk.released),
                    "failed": len(walk.failed_ids),
                    "failed_charge_ids": walk.failed_ids[:100],
                    "balance": walk.balance,
                    "held": walk.held,
                    "last_seq": walk.seq,
                },
            )
        outcomes[sid] = BatchOutcome(
            deposits_applied=len(walk.approved),
            charges_reserved=len(walk.reserved),
            charges_succeeded=len(walk.posted),
            charges_failed=len(walk.failed_ids) + len(walk.released),
            balance=walk.balance,
            held=walk.held,
            more_pending=more_pending,
            last_charge_id=walk.taken_charge_ids[-1] if walk.taken_charge_ids else after_charge_id,
            last_answered_id=walk.answered_ids[-1] if walk.answered_ids else after_answered_id,
        )
    return outcomes


def _update(cursor, statement: PreparedStatement, now, rows: list[tuple], what: str) -> None:
    if rows:
        statement.execute(cursor, [now, *_columns(rows)])
        _expect(cursor.rowcount, len(rows), what)


class _Walk:
    """One seller's intents applied in memory, in order, from its locked account."""

    def __init__(self, account):
        self.seller_id, self.balance, self.seq = account.seller_id, account.balance, account.last_seq
        self.held = account.held
        self.balance_before = account.balance
        self.entries: list[tuple] = []  # (seller, seq, kind, amount, balance_after, charge, deposit)
        self.approved: list[tuple[int, int]] = []  # (deposit id, balance after)
        self.reserved: list[tuple[int, int]] = []  # (charge id, balance after its hold)
        self.posted: list[int] = []  # charges whose hold the provider's success turned final
        self.released: list[int] = []  # charges whose hold the provider's failure gave back
        self.failed_ids: list[int] = []  # charges the balance did not cover
        self.taken_charge_ids: list[int] = []
        self.answered_ids: list[int] = []
        self.batch_outcomes: dict[int, list[int]] = {}  # batch id -> [succeeded, failed, amount]
        # (seller, event type, charge, deposit, amount, balance after, failure code), in order.
        self.events: list[tuple] = []

    @property
    def changed(self) -> bool:
        return bool(self.entries or self.posted)

    def _batch(self, batch_id: int | None) -> list[int] | None:
        return None if batch_id is None else self.batch_outcomes.setdefault(batch_id, [0, 0, 0])

    def answer(self, charge_id, amount, batch_id, outcome, failure_code, balance_after) -> None:
        """The provider's final answer on a reserved charge: post its hold or release it."""
        self.answered_ids.append(charge_id)
        self.held -= amount
        batch = self._batch(batch_id)
        if outcome == "succeeded":
            self.posted.append(charge_id)
            if batch is not None:
                batch[0] += 1
                batch[2] += amount
            self.events.append((self.seller_id, "charge.succeeded", charge_id, None, amount, balance_after, None))
            return
        self.balance += amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "release", amount, self.balance, charge_id, None))
        self.released.append(charge_id)
        if batch is not None:
            batch[1] += 1
        self.events.append((self.seller_id, "charge.failed", charge_id, None, amount, None, failure_code))

    def deposit(self, deposit_id: int, amount: int) -> None:
        self.balance += amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "deposit", amount, self.balance, None, deposit_id))
        self.approved.append((deposit_id, self.balance))
        self.events.append((self.seller_id, "deposit.approved", None, deposit_id, amount, self.balance, None))

    def charge(self, charge_id: int, amount: int, batch_id: int | None = None) -> None:
        """Reserve a queued charge: its debit is the hold, placed now, in the seller's sequence."""
        self.taken_charge_ids.append(charge_id)
        if amount > self.balance:
            self.failed_ids.append(charge_id)  # insufficient_funds; the next charge is still tried
            batch = self._batch(batch_id)
            if batch is not None:
                batch[1] += 1
            self.events.append((self.seller_id, "charge.failed", charge_id, None, amount, None, INSUFFICIENT_FUNDS))
            return
        self.balance -= amount
        self.held += amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "charge", -amount, self.balance, charge_id, None))
        self.reserved.append((charge_id, self.balance))


class PostingConflictError(RuntimeError):
    """An intent changed under the account lock: something bypassed the lock order."""


def _columns(rows: list[tuple]) -> list[str]:
    """One array literal per column of `rows`, for the statements' `unnest(...)`."""
    return [array_literal(column) for column in zip(*rows, strict=True)]


def _expect(updated: int, expected: int, what: str) -> None:
    if updated != expected:
        # Rolls the whole batch back: better no effect than a partial one.
        raise PostingConflictError(f"updated {updated} {what}, expected {expected}")
