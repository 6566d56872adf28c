"""The periodic ledger audit (`ledger.audit`): invariants 1-7 checked over what is new since each
seller's verified checkpoint (`AuditCheckpoint`), plus a rolling full pass over a few sellers a run.
The on-demand audit (`ledger/audit.py`, `manage.py ledger_audit`) still reads everything.

One REPEATABLE READ transaction: every check reads the same snapshot, so a seller settled while the
audit runs is either wholly in it or not at all, and no account lock is taken. The checks only read;
then the same transaction moves the checkpoints of the sellers that came out clean. The checkpoint
table is the audit's own bookkeeping, not the ledger: the audit never writes an entry, a balance or
an intent. A seller with any breach keeps its checkpoint, so the next run reports it again.

Per seller, starting from its checkpoint (or from nothing: a seller without one, and the
`full_sellers` whose last full verification is oldest):
- entries after `seq`: arithmetic (2), seq continuing gaplessly and balance_before chaining from the
  checkpoint's balance (2), no second entry for the same charge and kind or deposit (4);
- the account: not negative (1), balance = checkpoint sum + new amounts = last balance_after, last_seq
  = last seq (3), conservation from the running sums (6), held = its open holds (6);
- charges from `charge_floor` on and those the new entries name: their holds and releases (5), keys (7);
  deposits likewise. Below the floors every intent was final when checked; final intents do not change.
What this leaves unread (entries and final intents behind the checkpoint) only tampering can change:
the rolling full pass reads it, every seller at least once per ceil(sellers / full_sellers) runs."""

import time
from dataclasses import dataclass, field

from django.db import connection, transaction

from ledger.audit import CHARGE_ENTRIES_CHECK, DEPOSIT_ENTRY_CHECK, Breach
from ledger.audit_incremental_sql import (
    CHECKPOINT_COLUMNS,
    ENTRY_CHECKS,
    INSERT,
    INTENT_KEY_CHECKS,
    ROLLING_SLICE,
    STATE,
    UPDATE,
)

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
        params = {"full": [row[0] for row in cursor.fetchall()], "xmin": xmin, "limit": limit}

        cursor.execute(ENTRY_CHECKS, params)
        run.breaches.extend(Breach(*row) for row in cursor.fetchall())
        cursor.execute(STATE, params)
        states = cursor.fetchall()
        charge_ids: set[int] = set()
        deposit_ids: set[int] = set()
        for state in states:
            seller_id, from_zero, entries, charges, deposits = state[:5]
            for invariant, message in zip((1, 3, 6, 6), state[5:9], strict=True):
                if message is not None:
                    run.breaches.append(Breach(invariant, seller_id, None, message))
            charge_ids.update(charges or ())
            deposit_ids.update(deposits or ())
            run.entries += entries
            if from_zero:
                run.full_sellers.append(seller_id)
        cursor.execute("SELECT count(*) FROM ledger_account")
        run.sellers = cursor.fetchone()[0]
        run.charges, run.deposits = len(charge_ids), len(deposit_ids)
        run.breaches.extend(_intent_breaches(cursor, sorted(charge_ids), sorted(deposit_ids), limit))

        blocked = _sellers_of(cursor, run.breaches)
        rows = [state[9:] for state in states if state[0] not in blocked and state[-1]]
        run.advanced = _write_checkpoints(cursor, rows, xmax)
    run.breaches = run.breaches[:limit]
    run.seconds = time.monotonic() - started
    return run


def _intent_breaches(cursor, charge_ids: list[int], deposit_ids: list[int], limit: int) -> list[Breach]:
    """Invariants 5 and 7 for the charges and deposits the run covers, with the full audit's own
    invariant 5 queries."""
    breaches = []
    # As array literals: a list would be sent as ARRAY[...] of one constant per id, which PostgreSQL
    # parses and plans element by element.
    ids = {"charges": _literal(charge_ids), "deposits": _literal(deposit_ids), "limit": limit}
    checks = [
        (5, CHARGE_ENTRIES_CHECK.replace("{seller:c}", "c.id = ANY(%(charges)s::bigint[])")),
        (5, DEPOSIT_ENTRY_CHECK.replace("{seller:d}", "d.id = ANY(%(deposits)s::bigint[])")),
        (7, INTENT_KEY_CHECKS),
    ]
    for invariant, sql in checks:
        cursor.execute(f"{sql} LIMIT %(limit)s", ids)
        breaches.extend(Breach(invariant, s, e, m) for s, e, m in cursor.fetchall())
    return breaches


def _literal(ids: list[int]) -> str:
    return "{" + ",".join(map(str, ids)) + "}"


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
    columns = list(zip(*rows, strict=True))[:-1]  # the last one is `changed`
    params = {name: list(values) for name, values in zip(CHECKPOINT_COLUMNS, columns, strict=True)}
    params["xmax"] = xmax
    cursor.execute(UPDATE, params)
    cursor.execute(INSERT, params)
    return len(rows)
