"""The ledger audit's cost against the entries it reads, in this process, with beat stopped so its
own periodic audit cannot take the audit's lock meanwhile: the ledger grown to each size, then the
full audit (`manage.py ledger_audit`) and the periodic one (`ledger.audit`): a first run (no
checkpoints: every seller from nothing), a run with nothing new, runs after each batch of new
entries, and one whose rolling full pass takes `audit_rolling` sellers.

Entries are written straight in SQL at bulk speed, each a succeeded charge's hold with the rows
the posting code would have written; every run must find the ledger clean."""

from __future__ import annotations

import time

from django.db import connection, transaction

from bench import seed
from bench.scenarios import Context, ScenarioFailed
from bench.stack import reset_ledger
from ledger.statements.chain import CANONICAL_SQL

FUND = 10**15

# `per_seller` succeeded charges and their holds for every seller in %(sellers)s, continuing each
# seller's sequence and balance; then (`_CHAIN`) their hashes and the accounts. One transaction, as
# a settle would.
_APPEND = """
WITH a AS (SELECT seller_id, last_seq, balance FROM ledger_account WHERE seller_id = ANY(%(sellers)s)),
c AS (
    INSERT INTO ledger_charge (seller_id, phone_number, amount, reference, status, balance_after,
                               request_fingerprint, created_at, settled_at, stage, reserved_at,
                               submitted_at, outcome, outcome_at)
    SELECT a.seller_id, %(phone)s, 1, '', 'succeeded', a.balance - n, '', now(), now(), 'done', now(),
           now(), 'succeeded', now()
      FROM a CROSS JOIN generate_series(1, %(per_seller)s) n
    RETURNING id, seller_id, balance_after)
INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, created_at,
                          held_after, hash)
SELECT c.seller_id, a.last_seq + (a.balance - c.balance_after), 'charge', -1, c.balance_after + 1,
       c.balance_after, c.id, now(), 0, sha256('')
  FROM c JOIN a USING (seller_id)"""

# The hash chain of the entries just written (`sha256('')` stands in until then), as the settle
# computes it (ledger/statements/chain.py): a row at a time from each seller's last hash, with the
# append-only trigger set aside inside the transaction; then the accounts and their heads.
_CHAIN = f"""
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only;
DO $$
DECLARE
    r record;
    previous bytea;
    seller bigint;
BEGIN
    FOR r IN SELECT e.id, e.seller_id, a.last_hash, {CANONICAL_SQL.format(e="e")} AS canonical
               FROM ledger_entry e JOIN ledger_account a ON a.seller_id = e.seller_id
              WHERE e.seller_id = ANY(%(sellers)s) AND e.seq > a.last_seq ORDER BY e.seller_id, e.seq LOOP
        IF seller IS DISTINCT FROM r.seller_id THEN
            previous := r.last_hash;
            seller := r.seller_id;
        END IF;
        previous := sha256(previous || r.canonical);
        UPDATE ledger_entry SET hash = previous WHERE id = r.id;
    END LOOP;
END $$;
ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only;
UPDATE ledger_account SET last_seq = last_seq + %(per_seller)s, balance = balance - %(per_seller)s
 WHERE seller_id = ANY(%(sellers)s);
UPDATE ledger_account a SET last_hash = e.hash FROM ledger_entry e
 WHERE e.seller_id = a.seller_id AND e.seq = a.last_seq AND a.seller_id = ANY(%(sellers)s)"""


def run(ctx: Context) -> dict:
    sizes = ctx.sizes
    reset_ledger()
    sellers = seed.make_sellers(sizes.audit_sellers, prefix="audit")
    seed.fund(sellers, FUND)
    result: dict = {"sellers": len(sellers), "runs": []}
    entries = len(sellers)  # the funding deposits'

    def timed(what: str, full_sellers: int | None = None) -> None:
        """One audit: the full one (`full_sellers` None) or the periodic one, timed alone."""
        from ledger.audit import audit_ledger, audit_ledger_incremental

        with connection.cursor() as cur:  # what the full audit reads: every entry and every charge
            cur.execute("SELECT (SELECT count(*) FROM ledger_entry), (SELECT count(*) FROM ledger_charge)")
            read = cur.fetchone()
        started = time.perf_counter()
        if full_sellers is None:
            breaches = audit_ledger(limit=20)
        else:
            run = audit_ledger_incremental(full_sellers=full_sellers, limit=20)
            read, breaches = (run.entries, run.charges), run.breaches
            if run.skipped:
                breaches = ["skipped: another audit held the audit's lock"]
        seconds = round(time.perf_counter() - started, 3)
        row = {"ledger_entries": entries, "run": what, "entries_read": read[0], "charges_read": read[1]}
        result["runs"].append(row | {"seconds": seconds})
        if breaches:
            raise ScenarioFailed(f"audit, {what} at {entries:,} entries: {breaches[:5]}", partial=result)

    with ctx.stack.paused(ctx.stack.beat):
        for size in sizes.audit_sizes:
            entries += _append(sellers, size - entries)
            timed("full")
            with connection.cursor() as cur:
                cur.execute("TRUNCATE ledger_auditcheckpoint")
            timed("periodic, first run (no checkpoints)", 0)
            timed("periodic, nothing new", 0)
            for new in sizes.audit_new:
                entries += _append(sellers, new)
                timed(f"periodic, {new:,} new", 0)
            timed(f"periodic, rolling full pass of {sizes.audit_rolling}", sizes.audit_rolling)
    return result | {"audit": "ok"}  # every run found the ledger clean


def _append(sellers: list[int], entries: int) -> int:
    """About `entries` new entries spread evenly over the sellers, in transactions of ~200,000."""
    per_seller = max(1, entries // len(sellers))
    step = max(1, 200_000 // len(sellers))
    for start in range(0, per_seller, step):
        with transaction.atomic(), connection.cursor() as cur:
            params = {"sellers": sellers, "per_seller": min(step, per_seller - start), "phone": seed.PHONE}
            cur.execute(_APPEND, params)
            cur.execute(_CHAIN, params)
    with connection.cursor() as cur:
        cur.execute("ANALYZE ledger_entry, ledger_charge")
    return per_seller * len(sellers)
