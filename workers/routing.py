"""Which queue a seller's wake-up goes to: `ledger.shard.{seller_id % LEDGER_SHARDS}`.

A stable function of the id (never Python's salted `hash()`), so every web process and every
restart agree, and one shard worker serializes all of a seller's settlements."""

from django.conf import settings

SHARD_QUEUE_PREFIX = "ledger.shard."
DEFAULT_QUEUE = "ledger.default"


def shard_for(seller_id: int) -> int:
    return int(seller_id) % settings.LEDGER_SHARDS


def queue_for(seller_id: int) -> str:
    return f"{SHARD_QUEUE_PREFIX}{shard_for(seller_id)}"


def all_shard_queues() -> list[str]:
    return [f"{SHARD_QUEUE_PREFIX}{k}" for k in range(settings.LEDGER_SHARDS)]


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: a settle_seller sent any way at all still lands on its seller's shard."""
    if name == "ledger.settle_seller":
        seller_id = kwargs.get("seller_id") if kwargs else None
        if seller_id is None and args:
            seller_id = args[0]
        return {"queue": queue_for(seller_id)}
    return {"queue": DEFAULT_QUEUE}
