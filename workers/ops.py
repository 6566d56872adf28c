"""What the on-call engineer asks first: how deep is each shard queue, does anything consume it,
and whose intents have waited longest. Flower lists only queues a live worker consumes, so a shard
whose worker died is invisible there; this reads the broker directly, for every shard."""

from __future__ import annotations

import redis
from django.conf import settings
from kombu.transport.redis import Channel

from ledger.selectors import sellers_with_oldest_intents
from workers.ops_heartbeat import broker_client, live_workers
from workers.routing import DEFAULT_QUEUE, SHARD_QUEUE_PREFIX, all_shard_queues


def _list_keys(queue: str) -> list[str]:
    """kombu's Redis transport keeps one list per priority step: `queue` for priority 0 and
    `queue + "\\x06\\x16" + step` for the others, all under the optional global key prefix."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    prefix = options.get("global_keyprefix", "")
    steps = options.get("priority_steps", Channel.priority_steps)
    return [f"{prefix}{queue}" if not step else f"{prefix}{queue}{Channel.sep}{step}" for step in steps]


def queue_depths(queues: list[str], client: redis.Redis) -> dict[str, int]:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for key in _list_keys(queue):
                pipe.llen(key)
        sizes = pipe.execute()
    steps = len(sizes) // len(queues) if queues else 0
    return {queue: sum(sizes[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)}


def queue_report(*, oldest_limit: int = 10) -> dict:
    """Depth and live consumers of every shard queue (and the default queue), plus the sellers
    with the oldest waiting intents. If the broker does not answer, depths and consumers are null
    and `broker` says why: the database half is still worth reading then."""
    shard_queues = all_shard_queues()
    queues = [*shard_queues, DEFAULT_QUEUE]
    broker = "ok"
    try:
        client = broker_client()
        depths = queue_depths(queues, client)
        workers = live_workers(client)
    except redis.RedisError as exc:
        broker = f"error: {exc.__class__.__name__}"
        depths, workers = {}, {}

    def row(queue: str) -> dict:
        consumers = sorted(host for host, consumed in workers.items() if queue in consumed)
        return {
            "queue": queue,
            "depth": depths.get(queue),
            "consumers": len(consumers) if broker == "ok" else None,
            "workers": consumers,
        }

    shards = []
    for queue in shard_queues:
        shards.append({**row(queue), "shard": int(queue.removeprefix(SHARD_QUEUE_PREFIX))})
    oldest = sellers_with_oldest_intents(limit=oldest_limit)
    for seller in oldest:
        seller["queue"] = f"{SHARD_QUEUE_PREFIX}{seller['seller'] % settings.LEDGER_SHARDS}"
    return {"broker": broker, "queues": shards, "other_queues": [row(DEFAULT_QUEUE)], "oldest_waiting": oldest}
