"""Webhook delivery benchmark (docs/notifications.md): deliveries per second to local receivers,
and the latency from a deposit's approval to its `deposit.approved` webhook at the receiver.

    python -m bench.webhooks --database-url postgres://.../ledger_bench_x --redis-url redis://.../5

Production settings (bench.settings) with private URLs allowed; the production webhook worker
command (workers/stack.py); the test suite's receiver, which verifies every signature with the
`standardwebhooks` library. Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.stack import configure_environment, create_database, free_port
from devstack import processes

RECEIVER = Path(__file__).resolve().parent.parent / "tests" / "notifications" / "receiver.py"


def _receiver(port: int, log: Path, secrets: list[str], log_dir: Path):
    proc = processes.spawn(
        [sys.executable, str(RECEIVER), str(port), str(log), *secrets],
        log_dir / f"receiver-{port}.out",
        env=dict(os.environ),
    )
    time.sleep(1.0)
    return proc


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line] if log.exists() else []


def throughput(args, log_dir: Path) -> dict:
    from django.db import transaction

    from ledger.services.sellers import seller_create
    from notifications.delivery import fan_out
    from notifications.models import WebhookDelivery
    from notifications.outbox import event_record
    from notifications.services import endpoint_create
    from notifications.tasks import deliver_soon
    from workers.commands import webhook_worker_argv

    procs, sellers, endpoint_ids = [], [], []
    for index in range(args.endpoints):
        seller = seller_create(username=f"wh-bench-{time.time_ns()}-{index}", password="x" * 16, name="bench")
        port, log = free_port(), log_dir / f"throughput-{index}.jsonl"
        endpoint = endpoint_create(seller=seller, url=f"http://127.0.0.1:{port}/hook", event_types=[])
        procs.append(_receiver(port, log, [endpoint.secret], log_dir))
        sellers.append(seller.pk)
        endpoint_ids.append(endpoint.pk)
        with transaction.atomic():
            for n in range(args.events):
                event_record(seller_id=seller.pk, type="charge.succeeded", data={"charge_id": n, "amount": 1})
    fan_out(seller_ids=sellers)  # the deliveries exist before the clock starts
    for endpoint_id in endpoint_ids:
        deliver_soon(endpoint_id)
    total = args.events * args.endpoints
    procs.append(processes.spawn(webhook_worker_argv(), log_dir / "webhooks.log", env=dict(os.environ)))
    deadline = time.monotonic() + 600
    deliveries = WebhookDelivery.objects.filter(endpoint_id__in=endpoint_ids)
    try:
        while deliveries.filter(status="succeeded").count() < total and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        processes.stop_all(procs)
    stamps = list(deliveries.values_list("last_attempt_at", "delivered_at"))
    first = min(s[0] for s in stamps)
    last = max(s[1] for s in stamps if s[1])
    verified = sum(
        1 for i in range(args.endpoints) for line in _lines(log_dir / f"throughput-{i}.jsonl") if line["verified"]
    )
    seconds = (last - first).total_seconds()
    return {
        "endpoints": args.endpoints,
        "deliveries": total,
        "succeeded": deliveries.filter(status="succeeded").count(),
        "verified_by_receiver": verified,
        "seconds": round(seconds, 2),
        "deliveries_per_s": round(total / seconds, 1),
    }


def latency(args, log_dir: Path) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from ledger.services.deposits import deposit_approve, deposit_request
    from ledger.services.sellers import seller_create
    from notifications.services import endpoint_create
    from workers.assignment import shard_assignment
    from workers.commands import webhook_worker_argv, worker_argv

    seller = seller_create(username=f"wh-latency-{time.time_ns()}", password="x" * 16, name="bench")
    admin = get_user_model().objects.create_superuser(username=f"wh-admin-{time.time_ns()}", password="x" * 16)
    port, log = free_port(), log_dir / "latency.jsonl"
    endpoint = endpoint_create(seller=seller, url=f"http://127.0.0.1:{port}/hook", event_types=["deposit.approved"])
    env = dict(os.environ)
    procs = [_receiver(port, log, [endpoint.secret], log_dir)]
    shards = shard_assignment(settings.LEDGER_SHARDS, 1)[0]
    procs.append(
        processes.spawn(
            worker_argv(shards, name="bench-shards", with_default_queue=True), log_dir / "shards.log", env=env
        )
    )
    procs.append(processes.spawn(webhook_worker_argv(name="bench-webhooks"), log_dir / "webhooks-lat.log", env=env))
    time.sleep(8)  # workers ready
    approved_at = {}
    try:
        for _ in range(args.deposits):
            deposit, _ = deposit_request(seller=seller, amount=100)
            approved_at[deposit.pk] = time.time()
            deposit_approve(deposit_id=deposit.pk, approved_by=admin)
            time.sleep(1.0 / args.rate)
        deadline = time.monotonic() + 60
        while len(_lines(log)) < args.deposits and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        processes.stop_all(procs)
    seen = {}
    for line in _lines(log):
        if line["verified"]:
            seen.setdefault(line["event"]["data"]["deposit_id"], line["at"])
    delays = sorted(seen[d] - t for d, t in approved_at.items() if d in seen)
    return {
        "deposits": args.deposits,
        "received": len(delays),
        "rate_per_s": args.rate,
        "p50_ms": round(statistics.median(delays) * 1000, 1),
        "p99_ms": round(delays[int(len(delays) * 0.99) - 1] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--events", type=int, default=5000, help="events per endpoint (throughput)")
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--deposits", type=int, default=200, help="approvals timed (latency)")
    parser.add_argument("--rate", type=float, default=20.0, help="approvals per second (latency)")
    args = parser.parse_args()
    configure_environment(
        database_url=args.database_url, redis_url=args.redis_url, key_prefix="", worker_processes=1, web_workers=1
    )
    os.environ.update(WEBHOOK_ALLOW_PRIVATE_URLS="1", LOG_LEVEL="WARNING")
    create_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # the benchmark's own Redis database
    log_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    print(
        json.dumps(
            {"throughput": throughput(args, log_dir), "latency": latency(args, log_dir), "logs": str(log_dir)}, indent=2
        )
    )


if __name__ == "__main__":
    main()
