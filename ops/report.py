"""What the on-call engineer asks first: how deep is each shard queue, does anything consume it,
is it settling, and whose intents have waited longest. Flower lists only queues a live worker
consumes, so a shard whose worker died is invisible there; this reads the broker directly, for
every shard, and PostgreSQL for what waits.

A shard is *stalled* when its oldest waiting intent is older than `LEDGER_STALL_AFTER` and the
shard has settled nothing for as long: queue depth and consumers can look healthy meanwhile (a
lost wake-up leaves depth 0; a SIGKILLed worker counts as a consumer for a few seconds more)."""

from __future__ import annotations

import redis
from django.conf import settings

from core.db.replica import replica_report
from ledger.provider_account.floats import floats_report
from ledger.selectors import Waiting, sellers_waiting, sellers_with_oldest_intents
from workers.broker import broker_client, ops_key, queue_depths
from workers.heartbeat import live_entries
from workers.progress import SHARD_PROGRESS_KEY
from workers.routing import (
    DEFAULT_QUEUE,
    FULFIL_QUEUE,
    IMPORTS_QUEUE,
    RECONCILE_QUEUE,
    SHARD_QUEUE_PREFIX,
    SWEEP_QUEUE,
    WEBHOOK_QUEUE,
    all_shard_queues,
    shard_for,
)


def seconds_since_shard_progress(client: redis.Redis) -> dict[int, float]:
    now = client.time()[0]
    return {int(shard): max(now - int(at), 0) for shard, at in client.hgetall(ops_key(SHARD_PROGRESS_KEY)).items()}


def shard_waiting(waiting: dict[int, Waiting]) -> dict[int, dict]:
    """Per shard: the age of its oldest waiting intent and how many of its sellers wait."""
    shards: dict[int, dict] = {}
    for seller_id, seller in waiting.items():
        row = shards.setdefault(shard_for(seller_id), {"oldest": 0.0, "sellers": 0})
        row["oldest"] = max(row["oldest"], seller.age)
        row["sellers"] += 1
    return shards


def is_stalled(oldest_age: float, since_progress: float | None) -> bool:
    """Work older than the threshold and no settle on the shard for as long (or none known: Redis
    forgot, or the shard never settled)."""
    threshold = settings.LEDGER_STALL_AFTER
    return oldest_age > threshold and (since_progress is None or since_progress > threshold)


def queue_report(*, oldest_limit: int = 10) -> dict:
    """Depth and live consumers of every shard queue (and the other queues), each shard's oldest
    waiting intent and stall verdict, plus the sellers with the oldest waiting intents. If the
    broker does not answer, depths and consumers are null and `broker` says why: the database half
    (and the verdict, which then cannot see progress) is still worth reading."""
    shard_queues = all_shard_queues()
    other_queues = [SWEEP_QUEUE, DEFAULT_QUEUE, IMPORTS_QUEUE, FULFIL_QUEUE, RECONCILE_QUEUE, WEBHOOK_QUEUE]
    broker = "ok"
    try:
        client = broker_client()
        depths = queue_depths([*shard_queues, *other_queues], client)
        entries = live_entries(client)
        progress = seconds_since_shard_progress(client)
    except redis.RedisError as exc:
        broker = f"error: {exc.__class__.__name__}"
        depths, entries, progress = {}, {}, {}
    workers = {host: entry.get("queues", []) for host, entry in entries.items()}
    standbys = [{"worker": host, "shards": e["standby_for"]} for host, e in entries.items() if "standby_for" in e]

    def row(queue: str) -> dict:
        consumers = sorted(host for host, consumed in workers.items() if queue in consumed)
        return {
            "queue": queue,
            "depth": depths.get(queue),
            "consumers": len(consumers) if broker == "ok" else None,
            "workers": consumers,
        }

    waiting = shard_waiting(sellers_waiting())
    shards = []
    for queue in shard_queues:
        shard = int(queue.removeprefix(SHARD_QUEUE_PREFIX))
        oldest = waiting.get(shard, {}).get("oldest", 0.0)
        shards.append(
            {
                **row(queue),
                "shard": shard,
                "oldest_waiting_age_seconds": round(oldest, 3),
                "waiting_sellers": waiting.get(shard, {}).get("sellers", 0),
                "seconds_since_settle": progress.get(shard),
                "stalled": is_stalled(oldest, progress.get(shard)),
            }
        )
    oldest_sellers = sellers_with_oldest_intents(limit=oldest_limit) if oldest_limit else []
    for seller in oldest_sellers:
        seller["queue"] = f"{SHARD_QUEUE_PREFIX}{shard_for(seller['seller'])}"
    return {
        "broker": broker,
        "queues": shards,
        "other_queues": [row(queue) for queue in other_queues],
        "standbys": sorted(standbys, key=lambda standby: standby["shards"]),
        "oldest_waiting": oldest_sellers,
        "fulfilment": fulfilment_report(),
        "provider_floats": floats_report(),
        "replica": replica_report(),  # null without DATABASE_REPLICA_URL
    }


def fulfilment_report() -> dict:
    """Charges holding credit while the provider works on them, and the provider's gate: a
    breaker that is open explains reserved charges that wait (held, not lost)."""
    from ledger.conflicts import conflicts_report
    from ledger.fulfilment.gate import gate_for
    from ledger.fulfilment.reconcile import open_charges_report
    from providers import get_provider, provider_names

    provider = get_provider()
    gates = {name: gate_for(name).snapshot() for name in provider_names()}
    # "provider" and "gate": the default provider's (as before routing); "gates": every provider's.
    return {
        "provider": provider.name,
        **open_charges_report(),
        "gate": gates[provider.name],
        "gates": gates,
        "conflicts": conflicts_report(),
    }
