"""The only code that writes ledger entries, balances and holds.

`settle_batch` applies a seller's waiting intents under the account lock, in one transaction:
- provider answers recorded on reserved charges (`outcome`): a success posts the hold (the charge
  succeeds; `held` goes down), a failure releases it (a `release` entry gives the credit back);
- reversals recorded on succeeded charges: a `refund` entry gives the debit back and the charge
  ends `reversed`; late successes an admin asked to debit (ledger/conflicts.py): an `adjustment`
  entry takes the charge's price, if the balance covers it;
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
reverse.

A batch, `_settle`: lock the accounts (ledger/locks.py), read what waits (`_read_waiting`), apply
it in memory (`_apply`, one `_Walk` per seller), write the result (`_write`), then log. The charges'
moves (reserve, fail_unfunded, post, release) are the lifecycle's (ledger/charge_lifecycle.py).

Each entry also carries its link in the seller's hash chain (ledger/statements/chain.py), computed
here in memory from the account's `last_hash` before the one insert, and `held_after`, the seller's
held credit once the entry's batch is applied up to it: what answers the balance at a past time
(ledger/statements/balance_at.py) without reading the charges. Every entry and posted hold of a
batch carries the batch's one time, strictly later than the seller's previous batch's, so "the
last entry at or before T" is the last by seq and a post-only batch is told apart by its time."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.db.prepared import PreparedStatement, array_literal
from ledger import charge_lifecycle as lifecycle
from ledger import conflicts, events
from ledger.charge_lifecycle import ANSWERED_SQL, INSUFFICIENT_FUNDS, QUEUED_SQL, REVERSAL_WAITING_SQL
from ledger.conflicts import DEBITING_SQL
from ledger.locks import accounts_lock
from ledger.models import ChargeBatch
from ledger.statements.chain import entry_hashes

logger = logging.getLogger(__name__)

BATCH_QUEUED, BATCH_COMPLETED = ChargeBatch.Status.QUEUED, ChargeBatch.Status.COMPLETED
# The two rare kinds of row the answers' read also returns (its `outcome` column).
REVERSAL, CONFLICT_DEBIT = "reversed", "debit"
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class BatchOutcome:
    deposits_applied: int = 0
    charges_reserved: int = 0
    charges_succeeded: int = 0
    charges_failed: int = 0
    refunds_and_debits: int = 0  # reversals refunded, late successes debited
    balance: int | None = None
    held: int | None = None
    more_pending: bool = False
    # The last queued and answered charges this batch took: the next batch of the same drain
    # continues after them.
    last_charge_id: int = 0
    last_answered_id: int = 0

    @property
    def intents(self) -> int:
        return (
            self.deposits_applied
            + self.charges_reserved
            + self.charges_succeeded
            + self.charges_failed
            + self.refunds_and_debits
        )


# Prepared once per database session (core/db/prepared.py): planning these cost PostgreSQL more
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
    f"""SELECT seller_id, id, amount, batch_id FROM ledger_charge
    WHERE seller_id = $1 AND {QUEUED_SQL} AND id > $2 ORDER BY id LIMIT $3""",
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
    f"""SELECT seller_id, id, amount, batch_id FROM ledger_charge
    WHERE seller_id = ANY($1) AND {QUEUED_SQL} ORDER BY seller_id, id LIMIT $2""",
    ["bigint[]", "bigint"],
)
# Reserved charges with the provider's answer recorded, to post or release; in the same read (one
# round trip), succeeded charges the provider reversed (outcome `reversed`, the code its reason: a
# refund is due) and late successes an admin asked to debit (outcome `debit`, ledger/conflicts.py).
# The answers are limited inside their own part, so a drain's backlog of answers is still walked
# in order through its partial index and cut there; the two rare parts read partial indexes that
# are empty but for them; the outer sort sees at most `limit` rows and those few. Only the answers
# continue a drain's keyset: the rare rows are applied by whichever batch reads them first.
_ANSWERED_PARTS = f"""SELECT * FROM (
    (SELECT seller_id, id, amount, batch_id, outcome, outcome_code, balance_after FROM ledger_charge
      WHERE seller_id {{seller}} AND {ANSWERED_SQL} {{after}} ORDER BY {{order}} LIMIT {{limit}})
    UNION ALL
    SELECT seller_id, id, amount, NULL, '{REVERSAL}', reversal_reason, balance_after FROM ledger_charge
     WHERE seller_id {{seller}} AND {REVERSAL_WAITING_SQL}
    UNION ALL
    SELECT seller_id, charge_id, amount, NULL, '{CONFLICT_DEBIT}', NULL, NULL FROM ledger_providerconflict
     WHERE seller_id {{seller}} AND {DEBITING_SQL}
) AS waiting ORDER BY {{order}} LIMIT {{limit}}"""
_SELECT_ANSWERED_CHARGES = PreparedStatement(
    "ledger_settle_select_answered",
    _ANSWERED_PARTS.format(seller="= $1", after="AND id > $2", order="id", limit="$3"),
    ["bigint", "bigint", "bigint"],
)
_SELECT_ANSWERED_CHARGES_OF_SELLERS = PreparedStatement(
    "ledger_settle_select_answered_of_sellers",
    _ANSWERED_PARTS.format(seller="= ANY($1)", after="", order="seller_id, id", limit="$2"),
    ["bigint[]", "bigint"],
)
# The hashes travel as hex text: an array literal of bytea would need quoting.
_INSERT_ENTRIES = PreparedStatement(
    "ledger_settle_insert_entries",
    """INSERT INTO ledger_entry
        (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at,
         held_after, hash)
    SELECT e.seller_id, e.seq, e.kind, e.amount, e.balance_after - e.amount, e.balance_after, e.charge_id,
           e.deposit_id, $1, e.held_after, decode(e.hash, 'hex')
    FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10)
        AS e(seller_id, seq, kind, amount, balance_after, charge_id, deposit_id, held_after, hash)""",
    [
        "timestamptz",
        "bigint[]",
        "bigint[]",
        "text[]",
        "bigint[]",
        "bigint[]",
        "bigint[]",
        "bigint[]",
        "bigint[]",
        "text[]",
    ],
)
# Names each row by seller and id, though the id alone would do, as the lifecycle's moves of charges
# do, and for the same reason (ledger/charge_lifecycle.py): every index the planner may pick is then
# an exact lookup, never a walk of the partial index of pending rows.
_APPROVE_DEPOSITS = PreparedStatement(
    "ledger_settle_approve_deposits_by_seller",
    """UPDATE ledger_deposit AS d SET status = 'approved', applied_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3, $4) AS u(seller_id, id, balance_after)
    WHERE d.seller_id = u.seller_id AND d.id = u.id AND d.status = 'approving'""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)
# The outcomes of a charge batch's charges are counted here, by the settle that settles them: it
# holds the seller's account lock, which every writer of the batch's charges holds, so the counts
# stay exact and nothing else contends for the row. The settle of the last one completes the batch.
_COUNT_BATCH_OUTCOMES = PreparedStatement(
    "ledger_settle_count_batch_outcomes",
    f"""UPDATE ledger_chargebatch AS b SET
        succeeded = b.succeeded + u.succeeded, failed = b.failed + u.failed,
        succeeded_amount = b.succeeded_amount + u.amount,
        status = CASE WHEN b.succeeded + b.failed + u.succeeded + u.failed = b.valid_rows
                      THEN '{BATCH_COMPLETED}' ELSE b.status END,
        completed_at = CASE WHEN b.succeeded + b.failed + u.succeeded + u.failed = b.valid_rows
                            THEN $1 END
    FROM unnest($2, $3, $4, $5) AS u(id, succeeded, failed, amount)
    WHERE b.id = u.id AND b.status = '{BATCH_QUEUED}'
    RETURNING b.id, b.seller_id, b.status, b.succeeded, b.failed""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]", "bigint[]"],
)
_UPDATE_ACCOUNTS = PreparedStatement(
    "ledger_settle_update_accounts",
    """UPDATE ledger_account AS a SET balance = u.balance, held = u.held, last_seq = u.last_seq, updated_at = $1,
        last_hash = decode(u.last_hash, 'hex')
    FROM unnest($2, $3, $4, $5, $6) AS u(seller_id, balance, held, last_seq, last_hash)
    WHERE a.seller_id = u.seller_id""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]", "bigint[]", "text[]"],
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
    """Lock, read what waits, apply it in memory, write the result: one transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        accounts = accounts_lock(cursor, seller_ids=seller_ids)
        if not accounts:
            return {}
        ids = sorted(accounts)
        waiting = _read_waiting(
            cursor, ids, limit=limit, after_charge_id=after_charge_id, after_answered_id=after_answered_id
        )
        if not waiting.count:
            return {
                sid: BatchOutcome(
                    balance=accounts[sid].balance,
                    held=accounts[sid].held,
                    last_charge_id=after_charge_id,
                    last_answered_id=after_answered_id,
                )
                for sid in ids
            }
        walks = _apply([accounts[sid] for sid in ids], waiting)
        _write(cursor, walks, now=_batch_time(accounts.values()))
    _log_settled(walks)
    more_pending = waiting.count >= limit
    return {
        walk.seller_id: walk.outcome(
            more_pending=more_pending, after_charge_id=after_charge_id, after_answered_id=after_answered_id
        )
        for walk in walks
    }


# -- Read: the locked sellers' waiting intents, in the order they are applied.


@dataclass(frozen=True)
class _Waiting:
    answered: list[tuple]  # (seller, charge, amount, batch, outcome, outcome code, balance after its hold)
    deposits: list[tuple]  # (seller, deposit, amount)
    charges: list[tuple]  # (seller, charge, amount, batch), queued

    @property
    def count(self) -> int:
        return len(self.answered) + len(self.deposits) + len(self.charges)


def _read_waiting(cursor, ids: list[int], *, limit: int, after_charge_id: int, after_answered_id: int) -> _Waiting:
    """Up to `limit` intents: answers first, then approving deposits, then queued charges, each
    by seller and id. One seller reads by equality (its drain walks the partial index in order,
    after the previous batch's last ids), several with `ANY`."""
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
    return _Waiting(answered, deposits, cursor.fetchall())


# -- Apply: in memory, no statement.


def _apply(accounts: list, waiting: _Waiting) -> list["_Walk"]:
    """Each seller's intents applied to its locked account, in order: answers and deposits first
    (they can only help), then charges by id."""
    walks = {account.seller_id: _Walk(account) for account in accounts}
    for seller_id, charge_id, amount, batch_id, outcome, code, balance_after in waiting.answered:
        walks[seller_id].answer(charge_id, amount, batch_id, outcome, code, balance_after)
    for seller_id, deposit_id, amount in waiting.deposits:
        walks[seller_id].deposit(deposit_id, amount)
    for seller_id, charge_id, amount, batch_id in waiting.charges:
        walks[seller_id].charge(charge_id, amount, batch_id)
    return list(walks.values())


def _batch_time(accounts) -> datetime:
    """Now, or just after the latest previous batch of these sellers if a clock (another host's)
    is behind: a seller's batches then carry strictly increasing times."""
    return max(timezone.now(), *(account.updated_at + _MICROSECOND for account in accounts))


# -- Write: what the walks decided, set-based, each statement checked against what it expected.


def _write(cursor, walks: list["_Walk"], *, now) -> None:
    changed = [walk for walk in walks if walk.changed]
    _write_entries_and_intents(cursor, walks, changed, now)
    completed_batches = _count_batch_outcomes(cursor, walks, now)
    if changed:
        heads = [(w.seller_id, w.balance, w.held, w.seq, w.last_hash.hex()) for w in changed]
        _UPDATE_ACCOUNTS.execute(cursor, [now, *_columns(heads)])
        _expect(cursor.rowcount, len(changed), "accounts")
    _record_events(cursor, walks, changed, completed_batches, now)


def _write_entries_and_intents(cursor, walks: list["_Walk"], changed: list["_Walk"], now) -> None:
    entries = [entry for walk in changed for entry in walk.chained_entries(now)]
    if entries:  # seller, seq, kind, amount, balance_after, charge, deposit, held_after, hash
        _INSERT_ENTRIES.execute(cursor, [now, *_columns(entries)])
    posted = [(w.seller_id, c) for w in changed for c in w.posted]
    _expect(lifecycle.post(cursor, now=now, rows=posted), len(posted), "posted charges")
    released = [(w.seller_id, c) for w in changed for c in w.released]
    _expect(lifecycle.release(cursor, now=now, rows=released), len(released), "released charges")
    refunded = [(w.seller_id, c) for w in changed for c in w.refunded]
    _expect(lifecycle.reverse(cursor, now=now, rows=refunded), len(refunded), "reversed charges")
    debited = [(w.seller_id, c) for w in changed for c in w.debited]
    _expect(conflicts.debited(cursor, now=now, rows=debited), len(debited), "debited conflicts")
    refused = [(w.seller_id, *r) for w in walks for r in w.debit_refused]
    _expect(conflicts.debit_refused(cursor, rows=refused), len(refused), "refused debits")
    approved = [(w.seller_id, *d) for w in changed for d in w.approved]
    if approved:
        _APPROVE_DEPOSITS.execute(cursor, [now, *_columns(approved)])
        _expect(cursor.rowcount, len(approved), "deposits")
    reserved = [(w.seller_id, *c) for w in changed for c in w.reserved]
    _expect(lifecycle.reserve(cursor, now=now, rows=reserved), len(reserved), "reserved")
    unfunded = [(w.seller_id, c) for w in walks for c in w.failed_ids]
    _expect(lifecycle.fail_unfunded(cursor, now=now, rows=unfunded), len(unfunded), "failed charges")


def _count_batch_outcomes(cursor, walks: list["_Walk"], now) -> list[tuple]:
    """Adds the batch's outcomes to their charge batches; answers the batches it completed."""
    batches = [(b, *outcome) for walk in walks for b, outcome in walk.batch_outcomes.items()]
    if not batches:
        return []
    _COUNT_BATCH_OUTCOMES.execute(cursor, [now, *_columns(batches)])
    _expect(cursor.rowcount, len(batches), "charge batches")
    return [row for row in cursor.fetchall() if row[2] == BATCH_COMPLETED]


def _record_events(cursor, walks: list["_Walk"], changed: list["_Walk"], completed_batches: list[tuple], now) -> None:
    """The batch's events (charge.succeeded/failed, deposit.approved, balance.low, batch.completed)
    commit with it; what it reserved is sent to the provider after commit."""
    events.intents_settled(
        now=now,
        intents=[event for walk in walks for event in walk.events],
        balances=[(w.seller_id, w.balance_before, w.balance) for w in changed],
    )
    for batch_id, seller_id, batch_status, batch_succeeded, batch_failed in completed_batches:
        events.batch_completed(
            seller_id=seller_id,
            batch_id=batch_id,
            status=batch_status,
            succeeded=batch_succeeded,
            failed=batch_failed,
        )
    reserved_ids = [charge_id for walk in changed for charge_id, _ in walk.reserved]
    if reserved_ids:
        events.charges_reserved(charge_ids=reserved_ids)


def _log_settled(walks: list["_Walk"]) -> None:
    # One line per seller and batch, not per intent: a line each would cost more than the posting.
    for walk in walks:
        if walk.changed or walk.failed_ids:
            logger.info(
                "settled batch",
                extra={
                    "event": "ledger.batch_settled",
                    "seller_id": walk.seller_id,
                    "deposit_ids": [d for d, _ in walk.approved],
                    "first_charge_id": walk.taken_charge_ids[0] if walk.taken_charge_ids else None,
                    "last_charge_id": walk.taken_charge_ids[-1] if walk.taken_charge_ids else None,
                    "reserved": len(walk.reserved),
                    "posted": len(walk.posted),
                    "released": len(walk.released),
                    "refunded": walk.refunded,
                    "debited": walk.debited,
                    "debit_refused": [c for c, _ in walk.debit_refused],
                    "failed": len(walk.failed_ids),
                    "failed_charge_ids": walk.failed_ids[:100],
                    "balance": walk.balance,
                    "held": walk.held,
                    "last_seq": walk.seq,
                },
            )


class _Walk:
    """One seller's intents applied in memory, in order, from its locked account."""

    def __init__(self, account):
        self.seller_id, self.balance, self.seq = account.seller_id, account.balance, account.last_seq
        self.held = account.held
        self.last_hash = account.last_hash
        self.balance_before = account.balance
        self.entries: list[tuple] = []  # (seller, seq, kind, amount, balance_after, charge, deposit)
        self.approved: list[tuple[int, int]] = []  # (deposit id, balance after)
        self.reserved: list[tuple[int, int]] = []  # (charge id, balance after its hold)
        self.posted: list[int] = []  # charges whose hold the provider's success turned final
        self.released: list[int] = []  # charges whose hold the provider's failure gave back
        self.refunded: list[int] = []  # succeeded charges the provider reversed: their debit given back
        self.debited: list[int] = []  # late successes an admin charged to the seller
        self.debit_refused: list[tuple[int, str]] = []  # (charge, why): the balance did not cover it
        self.failed_ids: list[int] = []  # charges the balance did not cover
        self.taken_charge_ids: list[int] = []
        self.answered_ids: list[int] = []
        self.batch_outcomes: dict[int, list[int]] = {}  # batch id -> [succeeded, failed, amount]
        # (seller, event type, charge, deposit, amount, balance after, failure code), in order.
        self.events: list[tuple] = []

    @property
    def changed(self) -> bool:
        return bool(self.entries or self.posted)

    def chained_entries(self, now) -> list[tuple]:
        """The entries with `held_after` and their hash (hex), chained from the account's last
        hash; moves `last_hash` to the new head. `held_after` counts every hold this batch posts,
        whatever its place among the answers: the batch is one instant, and its last entry then
        carries the account's `held` once the batch is applied."""
        if not self.entries:
            return []
        hashes = entry_hashes(self.last_hash, self.entries, now)
        self.last_hash = hashes[-1]
        held, after = self.held, []
        for entry in reversed(self.entries):
            after.append(held)
            if entry[2] in ("charge", "release"):  # a hold placed (amount < 0) or given back (> 0)
                held += entry[3]
        after.reverse()
        return [
            (*entry, held_after, digest.hex())
            for entry, held_after, digest in zip(self.entries, after, hashes, strict=True)
        ]

    def outcome(self, *, more_pending: bool, after_charge_id: int, after_answered_id: int) -> BatchOutcome:
        return BatchOutcome(
            deposits_applied=len(self.approved),
            charges_reserved=len(self.reserved),
            charges_succeeded=len(self.posted),
            charges_failed=len(self.failed_ids) + len(self.released),
            refunds_and_debits=len(self.refunded) + len(self.debited),
            balance=self.balance,
            held=self.held,
            more_pending=more_pending,
            last_charge_id=self.taken_charge_ids[-1] if self.taken_charge_ids else after_charge_id,
            last_answered_id=self.answered_ids[-1] if self.answered_ids else after_answered_id,
        )

    def _batch(self, batch_id: int | None) -> list[int] | None:
        return None if batch_id is None else self.batch_outcomes.setdefault(batch_id, [0, 0, 0])

    def answer(self, charge_id, amount, batch_id, outcome, failure_code, balance_after) -> None:
        """The provider's final answer on a reserved charge: post its hold or release it. (Or one
        of the rare rows the same read returns: a reversal to refund, a conflict's debit.)"""
        if outcome == REVERSAL:
            self.refund(charge_id, amount, reason=failure_code)
            return
        if outcome == CONFLICT_DEBIT:
            self.debit(charge_id, amount)
            return
        self.answered_ids.append(charge_id)
        self.held -= amount
        batch = self._batch(batch_id)
        if outcome == lifecycle.SUCCEEDED:
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

    def refund(self, charge_id: int, amount: int, *, reason: str) -> None:
        """A succeeded charge the provider reversed: its debit is given back by a `refund` entry in
        the seller's sequence (the hold was posted long ago: `held` does not move)."""
        self.balance += amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "refund", amount, self.balance, charge_id, None))
        self.refunded.append(charge_id)
        self.events.append((self.seller_id, "charge.reversed", charge_id, None, amount, self.balance, reason))

    def debit(self, charge_id: int, amount: int) -> None:
        """A late success an admin charged to the seller: an `adjustment` of the charge's price,
        only if the balance covers it (never below zero); else the conflict goes back open."""
        if amount > self.balance:
            self.debit_refused.append((charge_id, f"balance {self.balance} does not cover {amount}"))
            return
        self.balance -= amount
        self.seq += 1
        self.entries.append((self.seller_id, self.seq, "adjustment", -amount, self.balance, charge_id, None))
        self.debited.append(charge_id)

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
