"""The periodic ledger audit (`ledger.audit`): invariants 1-7 checked over what is new since each
seller's verified checkpoint (`AuditCheckpoint`), plus a rolling full pass over a few sellers a run.
The on-demand audit (`ledger/audit/full.py`, `manage.py ledger_audit`) still reads everything.

One REPEATABLE READ transaction: every check reads the same snapshot, so a seller settled while the
audit runs is either wholly in it or not at all, and no account lock is taken. The checks only read;
then the same transaction moves the checkpoints of the sellers that came out clean. The checkpoint
table is the audit's own bookkeeping, not the ledger: the audit never writes an entry, a balance or
an intent. A seller with any breach keeps its checkpoint, so the next run reports it again.

Sellers verified from nothing (those without a checkpoint, and the `full_sellers` whose last full
verification is oldest) go through the full audit's own checks (`ledger/audit/full.py`), restricted to
them and run in the same snapshot: set-based scans, a few µs an entry. Every other seller, from its
checkpoint:
- entries after `seq`: arithmetic (2), seq continuing gaplessly and balance_before chaining from the
  checkpoint's balance (2), no second entry for the same charge and kind or deposit (4);
- the account: not negative (1), balance = checkpoint sum + new amounts = last balance_after, last_seq
  = last seq (3), conservation from the running sums (6), held = its open holds (6);
- charges from `charge_floor` on and those the new entries name: their holds and releases (5), keys (7);
  deposits likewise. Below the floors every intent was final when checked; final intents do not change.
What this leaves unread (entries and final intents behind the checkpoint) only tampering can change:
the rolling full pass reads it, every seller at least once per ceil(sellers / full_sellers) runs.

An intent is read by every run until it is final and a floor may pass it. A charge list's COPY
commits ids lower than ones already visible, so a floor moves only past ids that some snapshot saw
once every transaction open at that snapshot has ended. The previous run's snapshot qualifies once
its open transactions are gone (its xmax); waiting for that alone would have every final charge read
by two runs, and a first run's whole history read again by the next. So the run first notes the
highest ids a snapshot of its own sees and waits, up to SETTLE_WAIT_SECONDS, for the transactions in
this database begun before it to end (`_settled_bounds`); its floors may then pass those ids. When
they do not end in time (a long import, a session idle in a transaction) only the previous run's
snapshot counts. Inside a caller's transaction (the tests') it does not wait."""

import time
from dataclasses import dataclass, field

from django.db import connection, transaction

from ledger.audit.full import CHARGE_ENTRIES_CHECK, DEPOSIT_ENTRY_CHECK, Breach, audit_checks, id_array
from ledger.audit.incremental_sql import (
    CHECKPOINT_COLUMNS,
    ENTRY_CHECKS,
    FULL_STATE,
    INSERT,
    INTENT_KEY_CHECKS,
    OPEN_HERE,
    ROLLING_SLICE,
    SEEN,
    STATE,
    UNVERIFIED,
    UPDATE,
)

# How long a run waits for the transactions begun before its first snapshot (a settle takes
# milliseconds, an import's COPY seconds) before its floors fall back to the previous run's snapshot.
SETTLE_WAIT_SECONDS = 5.0

# Two audit runs at once would only race on the checkpoint rows; the second one steps aside.
_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('ledger.audit')),"
_SNAPSHOT = (
    " pg_snapshot_xmin(pg_current_snapshot())::text::bigint, pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
)


@dataclass
class AuditRun:
    breaches: list[Breach] = field(default_factory=list)
    sellers: int = 0  # sellers whose state was read
    full_sellers: list[int] = field(default_factory=list)  # verified from their first entry this run
    entries: int = 0  # entries read (new since a checkpoint, or all of a full seller's)
    new_entries: int = 0  # of those, never verified before: new since a checkpoint, or of a seller without one
    charges: int = 0
    deposits: int = 0
    advanced: int = 0  # checkpoints written
    seconds: float = 0.0
    skipped: bool = False  # another run held the audit's lock

    def summary(self) -> dict:
        return {
            "ok": not self.breaches,
            "breaches": [str(b) for b in self.breaches[:100]],
            "breach_count": len(self.breaches),
            "sellers": self.sellers,
            "full_sellers": len(self.full_sellers),
            "entries": self.entries,
            "charges": self.charges,
            "deposits": self.deposits,
            "checkpoints_advanced": self.advanced,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
        }


def audit_ledger_incremental(*, full_sellers: int, limit: int = 1000) -> AuditRun:
    """Check what is new since each seller's checkpoint and fully re-verify `full_sellers` sellers
    (those verified fully longest ago); move the checkpoints of the clean ones."""
    started = time.monotonic()
    run = AuditRun()
    outermost = not connection.in_atomic_block
    charge_bound, deposit_bound = _settled_bounds() if outermost else (0, 0)
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:  # else the caller's transaction (tests) is the snapshot
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # The per-seller subqueries' cost estimates add up past jit_above_cost, and compiling them
        # took longer than running them (0.19 s of a 0.2 s run with nothing new).
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_LOCK + _SNAPSHOT)
        locked, xmin, xmax = cursor.fetchone()
        if not locked:
            run.skipped = True
            return run
        cursor.execute(ROLLING_SLICE, [full_sellers])
        rolling = [row[0] for row in cursor.fetchall()]
        cursor.execute(UNVERIFIED)
        unverified = {row[0] for row in cursor.fetchall()}
        run.full_sellers = sorted({*rolling, *unverified})
        params = {
            "full": id_array(rolling),
            "xmin": xmin,
            "charge_bound": charge_bound,
            "deposit_bound": deposit_bound,
            "limit": limit,
        }

        cursor.execute(ENTRY_CHECKS, params)
        run.breaches.extend(Breach(*row) for row in cursor.fetchall())
        cursor.execute(STATE, params)
        states = cursor.fetchall()
        charge_ids: set[int] = set()
        deposit_ids: set[int] = set()
        for state in states:
            seller_id, _, entries, charges, deposits = state[:5]
            for invariant, message in zip((1, 3, 6, 6), state[5:9], strict=True):
                if message is not None:
                    run.breaches.append(Breach(invariant, seller_id, None, message))
            charge_ids.update(charges or ())
            deposit_ids.update(deposits or ())
            run.entries += entries
            run.new_entries += entries
        cursor.execute("SELECT count(*) FROM ledger_account")
        run.sellers = cursor.fetchone()[0]
        run.charges, run.deposits = len(charge_ids), len(deposit_ids)
        run.breaches.extend(_intent_breaches(cursor, sorted(charge_ids), sorted(deposit_ids), limit))

        run.breaches.extend(audit_checks(cursor, sellers=run.full_sellers, limit=limit))
        full_states = []
        if run.full_sellers:
            cursor.execute(FULL_STATE, {**params, "sellers": id_array(run.full_sellers)})
            full_states = cursor.fetchall()
        for state in full_states:
            run.entries += state[2]  # its last seq: every entry, once its checks passed
            if state[0] in unverified:
                run.new_entries += state[2]
            run.charges += state[-2]
            run.deposits += state[-1]

        # Past `limit` breaches a check stops reporting, so a seller's breach may go unseen: no
        # checkpoint moves in such a run.
        blocked = _sellers_of(cursor, run.breaches)
        rows = [state[9:-1] for state in states if state[0] not in blocked and state[-1]]
        rows += [state[:-2] for state in full_states if state[0] not in blocked]
        if len(run.breaches) < limit:
            run.advanced = _write_checkpoints(cursor, rows, xmax)
    run.breaches = run.breaches[:limit]
    run.seconds = time.monotonic() - started
    return run


def _intent_breaches(cursor, charge_ids: list[int], deposit_ids: list[int], limit: int) -> list[Breach]:
    """Invariants 5 and 7 for the charges and deposits the run covers, with the full audit's own
    invariant 5 queries."""
    breaches = []
    ids = {"charges": id_array(charge_ids), "deposits": id_array(deposit_ids), "limit": limit}
    checks = [
        (5, CHARGE_ENTRIES_CHECK.replace("{seller:c}", "c.id = ANY(%(charges)s::bigint[])")),
        (5, DEPOSIT_ENTRY_CHECK.replace("{seller:d}", "d.id = ANY(%(deposits)s::bigint[])")),
        (7, INTENT_KEY_CHECKS),
    ]
    for invariant, sql in checks:
        cursor.execute(f"{sql} LIMIT %(limit)s", ids)
        breaches.extend(Breach(invariant, s, e, m) for s, e, m in cursor.fetchall())
    return breaches


def _settled_bounds() -> tuple[int, int]:
    """One past the highest charge and deposit ids a snapshot saw, once every transaction in this
    database begun before that snapshot has ended: each lower id is then committed or never will be.
    (0, 0) if they have not within SETTLE_WAIT_SECONDS. In autocommit, before the run's snapshot."""
    with connection.cursor() as cursor:
        cursor.execute(SEEN)
        charge_seen, deposit_seen, seen_at = cursor.fetchone()
        deadline = time.monotonic() + SETTLE_WAIT_SECONDS
        while True:
            cursor.execute(OPEN_HERE, [seen_at])
            if cursor.fetchone()[0] == 0:
                return charge_seen + 1, deposit_seen + 1
            if time.monotonic() > deadline:
                return 0, 0
            time.sleep(0.02)


def _sellers_of(cursor, breaches: list[Breach]) -> set[int]:
    """Sellers whose checkpoint must stay: each breach's seller and the seller of its entry (an
    entry may name another seller's charge)."""
    sellers = {b.seller_id for b in breaches}
    entry_ids = [b.entry_id for b in breaches if b.entry_id is not None]
    if entry_ids:
        cursor.execute("SELECT DISTINCT seller_id FROM ledger_entry WHERE id = ANY(%s::bigint[])", [entry_ids])
        sellers.update(row[0] for row in cursor.fetchall())
    return sellers


def _write_checkpoints(cursor, rows: list[tuple], xmax: int) -> int:
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    params = {name: list(values) for name, values in zip(CHECKPOINT_COLUMNS, columns, strict=True)}
    params["xmax"] = xmax
    cursor.execute(UPDATE, params)
    cursor.execute(INSERT, params)
    return len(rows)
