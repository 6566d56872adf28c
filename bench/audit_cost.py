"""What a ledger audit costs against the entries it reads, in this process (no Celery): grow the
bench database's ledger to each size, time the full audit (`manage.py ledger_audit`) and the
periodic one (`ledger.audit`) on nothing new, then after each batch of new entries.

    .venv/bin/python -m bench.audit_cost [--sellers 1000] [--sizes 250000,1000000] [--new 10000,100000]
        [--full-sellers 0] [--rolling 100]

At each size: the full audit; the periodic run catching up to there; a first run (checkpoints
emptied, every seller from nothing) and the run after it; runs with nothing new; runs after each
batch of new entries; and one run whose rolling full pass takes `--rolling` sellers.

Entries are written straight in SQL at bulk speed, each a succeeded charge's hold with the rows
the posting code would have written (the audit checks them all: a run that finds a breach fails).
Wall-clock seconds on a shared machine: compare the runs of one invocation with each other."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.stack import default_database_url, default_redis_url
from ledger.statements.chain import CANONICAL_SQL

FUND = 10**15
PHONE = "+989121234567"

# `per_seller` succeeded charges and their holds for every seller in %(sellers)s, continuing each
# seller's sequence and balance; then the accounts. One transaction, as a settle would.
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
# would have computed it (ledger/statements/chain.py): a row at a time from each seller's last
# hash, with the append-only trigger set aside inside the transaction. Then each account's head.
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
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_cost")
    parser.add_argument("--sellers", type=int, default=1000)
    parser.add_argument("--sizes", default="250000,1000000", help="ledger sizes (entries) to measure at")
    parser.add_argument("--new", default="10000,100000", help="new entries before each periodic run")
    parser.add_argument("--full-sellers", type=int, default=0, help="the periodic run's rolling full pass")
    parser.add_argument("--rolling", type=int, default=100, help="sellers in the measured rolling full pass")
    parser.add_argument("--database-url", default=default_database_url())
    args = parser.parse_args(argv)

    from bench.stack import configure_environment, migrate
    from devstack.postgres import create_database

    configure_environment(
        database_url=args.database_url, redis_url=default_redis_url(), key_prefix="", worker_processes=1, web_workers=1
    )
    create_database(args.database_url)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    migrate()
    from bench import seed
    from bench.stack import reset_ledger

    reset_ledger()
    sellers = seed.make_sellers(args.sellers, prefix="audit")
    _fund(sellers)
    total = args.sellers  # the funding deposits' entries
    print(f"{args.sellers} sellers; periodic runs with full_sellers={args.full_sellers}")
    print(
        f"{'ledger entries':>14} {'run':<36} {'entries read':>12} {'charges read':>12} {'seconds':>8} {'us/entry':>9}"
    )
    failed = False
    for size in [int(s) for s in args.sizes.split(",")]:
        total += _append(sellers, size - total)
        failed |= _report(total, "full audit (manage.py ledger_audit)", *_full())
        failed |= _report(total, "periodic: catch up to here", *_periodic(args.full_sellers))
        failed |= _report(total, "periodic: the run after it", *_periodic(args.full_sellers))
        _forget_checkpoints()
        failed |= _report(total, "periodic: first run (no checkpoints)", *_periodic(args.full_sellers))
        failed |= _report(total, "periodic: the run after it", *_periodic(args.full_sellers))
        failed |= _report(total, "periodic: nothing new", *_periodic(args.full_sellers))
        for new in [int(n) for n in args.new.split(",")]:
            total += _append(sellers, new)
            failed |= _report(total, f"periodic: {new:,} new entries", *_periodic(args.full_sellers))
        failed |= _report(total, f"periodic: rolling pass of {args.rolling}", *_periodic(args.rolling))
    return 1 if failed else 0


def _fund(sellers: list[int]) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "WITH d AS (INSERT INTO ledger_deposit (seller_id, amount, reference, status, request_fingerprint,"
            " created_at, decided_at, reason, applied_at, balance_after)"
            " SELECT s, %(fund)s, '', 'approved', '', now(), now(), '', now(), %(fund)s FROM unnest(%(sellers)s) s"
            " RETURNING id, seller_id)"
            " INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after, deposit_id,"
            " created_at, held_after, hash) SELECT seller_id, 1, 'deposit', %(fund)s, 0, %(fund)s, id, now(), 0,"
            " sha256('') FROM d",
            {"fund": FUND, "sellers": sellers},
        )
        _chain(cur, sellers)
        cur.execute("UPDATE ledger_account SET balance = %s, last_seq = 1 WHERE seller_id = ANY(%s)", [FUND, sellers])
        _heads(cur, sellers)


def _append(sellers: list[int], entries: int) -> int:
    """About `entries` new entries spread evenly over the sellers, in chunks of ~200,000."""
    from django.db import connection, transaction

    per_seller = max(1, entries // len(sellers))
    step = max(1, 200_000 // len(sellers))
    for start in range(0, per_seller, step):
        n = min(step, per_seller - start)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(_APPEND, {"sellers": sellers, "per_seller": n, "phone": PHONE})
            _chain(cur, sellers)
            cur.execute(
                "UPDATE ledger_account SET last_seq = last_seq + %s, balance = balance - %s WHERE seller_id = ANY(%s)",
                [n, n, sellers],
            )
            _heads(cur, sellers)
    with connection.cursor() as cur:
        cur.execute("ANALYZE ledger_entry")
        cur.execute("ANALYZE ledger_charge")
    return per_seller * len(sellers)


def _chain(cur, sellers: list[int]) -> None:
    cur.execute(_CHAIN, {"sellers": sellers})


def _heads(cur, sellers: list[int]) -> None:
    cur.execute(
        "UPDATE ledger_account a SET last_hash = e.hash FROM ledger_entry e"
        " WHERE e.seller_id = a.seller_id AND e.seq = a.last_seq AND a.seller_id = ANY(%s)",
        [sellers],
    )


def _forget_checkpoints() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE ledger_auditcheckpoint")


def _full() -> tuple[int, int, float, list]:
    from django.db import connection

    from ledger.audit import audit_ledger

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger_entry")
        entries = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM ledger_charge")
        charges = cur.fetchone()[0]
    started = time.perf_counter()
    breaches = audit_ledger(limit=20)
    return entries, charges, time.perf_counter() - started, breaches


def _periodic(full_sellers: int) -> tuple[int, int, float, list]:
    from ledger.audit import audit_ledger_incremental

    started = time.perf_counter()
    run = audit_ledger_incremental(full_sellers=full_sellers, limit=20)
    return run.entries, run.charges, time.perf_counter() - started, run.breaches


def _report(total: int, what: str, entries: int, charges: int, seconds: float, breaches: list) -> bool:
    per_entry = f"{seconds / entries * 1e6:9.2f}" if entries else f"{'-':>9}"
    print(f"{total:>14,} {what:<36} {entries:>12,} {charges:>12,} {seconds:>8.3f} {per_entry}", flush=True)
    for breach in breaches[:5]:
        print(f"  BREACH {breach}")
    return bool(breaches)


if __name__ == "__main__":
    sys.exit(main())
