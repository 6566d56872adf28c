"""What the settle tasks record after a commit that applied intents: counters of settle runs and
intents (Prometheus' `rate(ledger_settled_intents_total[1m])` turns them into throughput) and
when each shard last made progress (the stall verdict). The ops app reads them back
(ops/metrics.py, ops/report.py); they are the one number that cannot be recomputed afterwards."""

from __future__ import annotations

import logging

import redis

from workers.broker import broker_client, ops_key

logger = logging.getLogger(__name__)

SETTLED_INTENTS_KEY = "ledger:ops:settled_intents"
SETTLE_RUNS_KEY = "ledger:ops:settle_runs"
# Hash shard -> Redis server time (seconds) of the shard's last settle that applied intents.
SHARD_PROGRESS_KEY = "ledger:ops:shard_settled_at"

_RECORD_PROGRESS = "redis.call('HSET', KEYS[1], ARGV[1], redis.call('TIME')[1])"


def record_shard_progress(shard: int, client: redis.Redis) -> None:
    client.eval(_RECORD_PROGRESS, 1, ops_key(SHARD_PROGRESS_KEY), int(shard))


def settled(*, shard: int, intents: int, runs: int = 1) -> None:
    """Count settle runs (one per seller settled) and the intents they applied, and note that the
    shard made progress. Never fails the task: the money has already moved (and committed) when
    this runs, a missed increment only costs a metric."""
    client = broker_client()
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.incrby(ops_key(SETTLED_INTENTS_KEY), intents)
            pipe.incrby(ops_key(SETTLE_RUNS_KEY), runs)
            pipe.execute()
        record_shard_progress(shard, client)
    except redis.RedisError as exc:
        logger.warning("settle metrics not recorded: %s", exc)
