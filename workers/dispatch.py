"""The only places that enqueue. Always after commit: a worker must never wake up before the
intent it should settle is visible, and a rolled-back request must enqueue nothing."""

import logging
from functools import cache, partial

import redis
from django.conf import settings
from django.db import transaction

from core.redis_script import ThreadScript
from workers.routing import queue_for, shard_for, shard_queue

logger = logging.getLogger(__name__)

# Fail fast when Redis is away: a wake-up is only a hint, the sweeper re-sends it, and a request
# must not hang on the broker.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def wake_seller(seller_id: int) -> None:
    from workers.tasks import settle_seller_task

    settle_seller_task.apply_async(
        kwargs={"seller_id": seller_id}, queue=queue_for(seller_id), retry_policy=PUBLISH_RETRY_POLICY
    )


def wake_seller_on_commit(seller_id: int) -> None:
    """Wake the seller's worker once the current transaction commits; one wake-up per seller per
    transaction is enough, however many intents it recorded. Django drops callbacks of rolled-back
    (save)points, so a rolled-back intent enqueues nothing."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        getattr(callback, "ledger_seller_id", None) == seller_id for _, callback, *_ in connection.run_on_commit
    ):
        return
    send = partial(wake_seller_coalesced, seller_id)
    send.ledger_seller_id = seller_id  # type: ignore[attr-defined]
    # robust: once the intent is committed, a broker outage must not turn the request into an
    # error. The intent stays queued and the sweeper wakes its seller later.
    transaction.on_commit(send, robust=True)


# --- Coalescing wake-ups from commits, per shard -----------------------------------------------
# Under load many commits arrive while one settle is still queued; one pending wake-up per shard
# is enough. A commit adds its seller to the shard's "dirty" set and, in the same Redis script,
# claims the shard's flag ("a settle_shard task is queued and has not started"); only the commit
# that sets the flag publishes. The task, before it settles anything, deletes the flag and takes
# the dirty set in one script, then settles every seller it took. A commit whose claim found the
# flag set ran its script before that take (scripts are atomic), so its seller is in what the
# task takes and its intent, committed before the claim, is seen by the settle. A claim after
# the take sets the flag again and publishes the next task.
#
# Per shard rather than per seller: a task costs the worker Celery's overhead (message, events,
# acknowledgement) besides the settle itself, and with a task per seller every active seller
# costs tasks of its own; per shard it is at most LEDGER_SHARDS tasks per cooldown.
#
# Cooldown: taking a shard's set also marks, for `LEDGER_WAKE_COOLDOWN` seconds, that its settle
# started; a wake-up claimed inside that window is published with a countdown to its end, so under
# load each shard is settled in a few batches a second, and the flag stays set meanwhile, so the
# window's commits publish nothing. A shard not settled within the window is woken at once.
#
# Losing a wake-up costs latency, never money: a flag whose task was lost expires after
# WAKE_FLAG_TTL, and the sweeper (beat) wakes every seller whose intents waited too long, with
# `wake_seller`, which always publishes a settle_seller task for that one seller.
WAKE_FLAG_TTL = 30

# KEYS: flag, cooldown, dirty set; ARGV: seller id, flag TTL. Returns -1 if a task is pending
# already, else the milliseconds left of the cooldown (0: none).
_CLAIM_WAKE_UP = """
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 then return 0 end
  return left
end
return -1
"""

# KEYS: flag, cooldown, dirty set; ARGV: cooldown in ms. Returns the sellers to settle.
_TAKE_DIRTY = """
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
local sellers = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return sellers
"""


@cache
def _broker_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)


# Every commit's claim: over a bare connection per thread (core/redis_script.py), not the client.
_claim_wake_up = ThreadScript(
    _CLAIM_WAKE_UP, lambda: settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1
)


@cache
def _take_dirty():
    return _broker_redis().register_script(_TAKE_DIRTY)


def _shard_keys(shard: int) -> list[str]:
    # Under the broker's key prefix, so stacks sharing a Redis database never silence each other.
    prefix = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("global_keyprefix", "")
    return [f"{prefix}ledger:{name}:{int(shard)}" for name in ("wake-pending", "settle-started", "dirty")]


def wake_shard(shard: int, *, countdown: float | None = None) -> None:
    from workers.tasks import settle_shard_task

    settle_shard_task.apply_async(
        kwargs={"shard": shard},
        queue=shard_queue(shard),
        countdown=countdown,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def wake_seller_coalesced(seller_id: int) -> None:
    shard = shard_for(seller_id)
    keys = _shard_keys(shard)
    try:
        left_ms = _claim_wake_up(keys=keys, args=[int(seller_id), WAKE_FLAG_TTL])
    except redis.RedisError:
        # Cannot tell whether one is pending: wake the seller itself (which fails too if Redis is
        # away; the intent is committed and the sweeper wakes it later).
        wake_seller(seller_id)
        return
    if left_ms < 0:
        return
    try:
        wake_shard(shard, countdown=left_ms / 1000 if left_ms else None)
    except Exception:
        # Not published: the flag must not silence the next commits' wake-ups.
        try:
            _broker_redis().delete(keys[0])
        except redis.RedisError:
            logger.warning("could not clear the wake-up flag of shard %s", shard)
        raise


def take_dirty_sellers(shard: int) -> list[int]:
    """Reopen the shard's flag, start its cooldown, and take the sellers whose commits asked for
    a settle since the last take. Called by the shard's task before it settles them."""
    cooldown_ms = int(settings.LEDGER_WAKE_COOLDOWN * 1000)
    sellers = _take_dirty()(keys=_shard_keys(shard), args=[cooldown_ms])
    return sorted(int(seller_id) for seller_id in sellers)
