"""Which queue a seller's wake-up goes to: `ledger.shard.{seller_id % LEDGER_SHARDS}` (and a
shard's wake-up to `ledger.shard.{shard}`).

A stable function of the id (never Python's salted `hash()`), so every web process and every
restart agree, and one shard worker serializes all of a seller's settlements."""

from django.conf import settings

SHARD_QUEUE_PREFIX = "ledger.shard."
DEFAULT_QUEUE = "ledger.default"
# Charge list imports: long tasks on a queue and worker of their own.
IMPORTS_QUEUE = "ledger.imports"
# Consumed by every shard worker process, so sweeping survives the loss of any one of them.
SWEEP_QUEUE = "ledger.sweep"
SWEEP_TASK = "ledger.sweep_stale_sellers"
# Statements and checkpoints: long or rare work, on the import worker's queue (workers/statement_tasks.py).
STATEMENT_TASKS = ("ledger.sign_checkpoints", "ledger.build_statement", "ledger.monthly_statements")
# The daily close of a provider: long, rare, on the import worker's queue too.
PROVIDER_CLOSE_TASK = "ledger.provider_close"
WEBHOOK_QUEUE = "ledger.webhooks"
# Provider calls: a worker of their own, threads (they wait on the network), never a shard's.
FULFIL_QUEUE = "ledger.fulfil"
# The reconciler, the provider's callbacks and the float's poll, on a queue of its own that the fulfilment worker also consumes: its lookups must
# not wait behind a backlog of sends (Celery takes from each of a worker's queues in turn).
RECONCILE_QUEUE = "ledger.fulfil.reconcile"


def shard_for(seller_id: int) -> int:
    return int(seller_id) % settings.LEDGER_SHARDS


def shard_queue(shard: int) -> str:
    return f"{SHARD_QUEUE_PREFIX}{int(shard)}"


def queue_for(seller_id: int) -> str:
    return shard_queue(shard_for(seller_id))


def all_shard_queues() -> list[str]:
    return [f"{SHARD_QUEUE_PREFIX}{k}" for k in range(settings.LEDGER_SHARDS)]


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: a settle_seller or settle_shard sent any way at all still lands on its shard."""
    if name in ("ledger.settle_seller", "ledger.settle_shard"):
        key = "seller_id" if name == "ledger.settle_seller" else "shard"
        value = kwargs.get(key) if kwargs else None
        if value is None and args:
            value = args[0]
        return {"queue": queue_for(value) if key == "seller_id" else shard_queue(value)}
    if name in ("ledger.import_batch", PROVIDER_CLOSE_TASK, *STATEMENT_TASKS):
        return {"queue": IMPORTS_QUEUE}
    if name == "ledger.fulfil":
        return {"queue": FULFIL_QUEUE}
    if name in ("ledger.reconcile_fulfilment", "ledger.poll_provider_float", "ledger.apply_callback"):
        return {"queue": RECONCILE_QUEUE}
    if name == SWEEP_TASK:
        return {"queue": SWEEP_QUEUE}
    if name.startswith("notifications."):
        return {"queue": WEBHOOK_QUEUE}  # deliveries never run on (or wait behind) a shard worker
    return {"queue": DEFAULT_QUEUE}
