"""Where a hot seller's settlement spends its time, statement by statement: queue N charges for
one seller in the bench database, drain them with `ledger.posting.settle_batch` in this process
(no Celery), and time every SQL statement plus the Python between them.

    .venv/bin/python -m bench.statement_profile [--charges 100000] [--batch 5000] [--explain]

`--explain` also prints EXPLAIN (ANALYZE, BUFFERS) of the queued-charge lookup before the first
batch and before the last one (each inside a rolled-back transaction)."""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

from bench.stack import default_database_url, default_redis_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statement_profile")
    parser.add_argument("--charges", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--database-url", default=default_database_url())
    args = parser.parse_args(argv)

    from bench.stack import configure_environment, create_database, migrate

    configure_environment(
        database_url=args.database_url,
        redis_url=default_redis_url(),
        key_prefix="",
        worker_processes=1,
        web_workers=1,
    )
    create_database(args.database_url)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    migrate()
    from django.db import connection

    from bench import seed
    from bench.stack import reset_ledger
    from ledger.audit import audit_ledger
    from ledger.posting import settle_batch

    reset_ledger()
    [seller_id] = seed.make_sellers(1, prefix="profile")
    seed.fund([seller_id], args.charges * 1000 + 1)
    seed.queue_charges([seller_id], per_seller=args.charges, amount=1000)
    if args.explain:
        _explain(connection, seller_id, args.batch, "first batch")

    times: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()

    last_end = [0.0]

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = _label(sql)
            last_end[0] = time.perf_counter()
            times[key] += last_end[0] - t0
            counts[key] += 1

    import psutil

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cur.fetchone()[0])
    me = psutil.Process()

    def cpu(proc) -> float:
        t = proc.cpu_times()
        return t.user + t.system

    backend_cpu, python_cpu = cpu(backend), cpu(me)
    batches = 0
    started = time.perf_counter()
    with connection.execute_wrapper(wrapper):
        while True:
            t0 = time.perf_counter()
            outcome = settle_batch(seller_id=seller_id, limit=args.batch)
            done = time.perf_counter()
            times["(whole batch incl. commit)"] += done - t0
            times["commit (deferred FK checks, WAL flush)"] += done - last_end[0]
            counts["commit (deferred FK checks, WAL flush)"] += 1
            batches += 1
            if args.explain and args.charges - batches * args.batch == args.batch:
                _explain(connection, seller_id, args.batch, "last batch")
            if not outcome.more_pending:
                break
    total = time.perf_counter() - started
    backend_cpu, python_cpu = cpu(backend) - backend_cpu, cpu(me) - python_cpu
    print(f"{args.charges} charges in {batches} batches of {args.batch}: {total:.2f} s, {args.charges / total:,.0f}/s")
    # CPU time is the cost; wall time also holds the machine's other load and the commit's fsync.
    print(
        f"CPU: postgres backend {backend_cpu:.2f} s ({backend_cpu / args.charges * 1e6:.1f} us/charge), "
        f"python {python_cpu:.2f} s ({python_cpu / args.charges * 1e6:.1f} us/charge); "
        f"CPU-bound ceiling {args.charges / (backend_cpu + python_cpu):,.0f} charges/s"
    )
    whole = times.pop("(whole batch incl. commit)")
    sql_total = sum(times.values())
    print(f"{'statement':<40} {'calls':>6} {'seconds':>8} {'share':>6}")
    for key, seconds in times.most_common():
        print(f"{key:<40} {counts[key]:>6} {seconds:>8.3f} {seconds / whole:>6.1%}")
    print(
        f"{'python (building and adapting the arrays)':<40} {'':>6} {whole - sql_total:>8.3f} {(whole - sql_total) / whole:>6.1%}"
    )
    breaches = audit_ledger(seller_id=seller_id)
    print("audit:", "ok" if not breaches else breaches[:5])
    return 1 if breaches else 0


def _label(sql: str) -> str:
    sql = " ".join(sql.split())
    for pattern, label in [
        (r"FOR NO KEY UPDATE", "lock account (SELECT ... FOR NO KEY UPDATE)"),
        (r"FROM ledger_deposit WHERE", "select approving deposits"),
        (r"FROM ledger_charge WHERE", "select queued charges"),
        (r"INSERT INTO ledger_entry", "insert entries (unnest)"),
        (r"UPDATE ledger_charge AS c", "mark charges succeeded (unnest)"),
        (r"UPDATE ledger_charge SET status = 'failed'", "mark charges failed"),
        (r"UPDATE ledger_account", "update account"),
        (r"UPDATE ledger_deposit", "mark deposits approved"),
    ]:
        if re.search(pattern, sql):
            return label
    return sql[:40]


def _explain(connection, seller_id: int, batch: int, when: str) -> None:
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, amount FROM ledger_charge"
            " WHERE seller_id = %s AND status = 'queued' AND id > 0 ORDER BY id LIMIT %s",
            [seller_id, batch],
        )
        print(f"--- queued-charge lookup, {when}:")
        print("\n".join(row[0] for row in cur.fetchall()))
        transaction.set_rollback(True)


if __name__ == "__main__":
    sys.exit(main())
