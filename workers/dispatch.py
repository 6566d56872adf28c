"""The only places that enqueue. Always after commit: a worker must never wake up before the
intent it should settle is visible, and a rolled-back request must enqueue nothing."""

import logging
from functools import cache, partial

import redis
from celery.signals import task_prerun
from django.conf import settings
from django.db import transaction

from workers.routing import queue_for

logger = logging.getLogger(__name__)

# Fail fast when Redis is away: a wake-up is only a hint, the sweeper re-sends it, and a request
# must not hang on the broker.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def wake_seller(seller_id: int, *, countdown: float | None = None) -> None:
    from workers.tasks import settle_seller_task

    settle_seller_task.apply_async(
        kwargs={"seller_id": seller_id},
        queue=queue_for(seller_id),
        countdown=countdown,
        retry_policy=PUBLISH_RETRY_POLICY,
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


# --- Coalescing wake-ups from commits --------------------------------------------------------
# Under load a seller records many intents while one settle is still queued; one pending wake-up
# is enough, and each extra one cost the web a publish and the shard worker an empty settle (2-3
# ms of CPU per charge on each side). A flag per seller marks "a wake-up is queued and has not
# started": set (NX) before publishing from a commit, deleted by the worker just before the task
# body runs (task_prerun). A commit that finds the flag set needs no wake-up of its own: its
# intent was committed before it looked, the flag was deleted after that, and the settle drains
# only after the delete, so it sees the intent. The sweeper and the task's own re-enqueue use
# `wake_seller` and always publish; a flag whose wake-up was lost expires after WAKE_FLAG_TTL.
#
# Cooldown: the worker also marks when a seller's settle started, for `LEDGER_WAKE_COOLDOWN`
# seconds. A wake-up published inside that window is delayed (Celery countdown) to its end, so
# a seller submitting hundreds of charges a second is settled in a few batches a second instead
# of a task per charge or two; the flag stays set meanwhile, so the window's commits publish
# nothing. A seller not settled within the window is woken at once: the latency is only added
# under load, and is at most the cooldown.
WAKE_FLAG_TTL = 30

# One round trip: set the flag if no wake-up is pending, and then say how long the cooldown has
# left (0: none). -1: a wake-up is pending already.
_CLAIM_WAKE_UP = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 then return 0 end
  return left
end
return -1
"""


@cache
def _broker_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)


@cache
def _claim_script():
    return _broker_redis().register_script(_CLAIM_WAKE_UP)


def _key_prefix() -> str:
    # Under the broker's key prefix, so stacks sharing a Redis database never silence each other.
    return (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("global_keyprefix", "")


def _wake_flag(seller_id: int) -> str:
    return f"{_key_prefix()}ledger:wake-pending:{int(seller_id)}"


def _cooldown_key(seller_id: int) -> str:
    return f"{_key_prefix()}ledger:settle-started:{int(seller_id)}"


def wake_seller_coalesced(seller_id: int) -> None:
    flag = _wake_flag(seller_id)
    try:
        left_ms = _claim_script()(keys=[flag, _cooldown_key(seller_id)], args=[WAKE_FLAG_TTL])
    except redis.RedisError:
        left_ms = 0  # cannot tell whether one is pending: publish (which fails too if Redis is away)
    if left_ms < 0:
        return
    try:
        wake_seller(seller_id, countdown=left_ms / 1000 if left_ms else None)
    except Exception:
        # Not published: the flag must not silence the next commits' wake-ups.
        try:
            _broker_redis().delete(flag)
        except redis.RedisError:
            logger.warning("could not clear the wake-up flag of seller %s", seller_id)
        raise


@task_prerun.connect
def _clear_wake_flag(sender=None, task=None, args=None, kwargs=None, **_):
    if getattr(task, "name", None) != "ledger.settle_seller":
        return
    seller_id = (kwargs or {}).get("seller_id", args[0] if args else None)
    if seller_id is None:
        return
    try:
        pipe = _broker_redis().pipeline(transaction=False)
        pipe.delete(_wake_flag(seller_id))
        cooldown_ms = int(settings.LEDGER_WAKE_COOLDOWN * 1000)
        if cooldown_ms > 0:
            pipe.set(_cooldown_key(seller_id), 1, px=cooldown_ms)
        pipe.execute()
    except redis.RedisError:
        # The flag expires by itself; until then this seller's commits rely on the task's own
        # re-enqueue and the sweeper.
        logger.warning("could not clear the wake-up flag of seller %s", seller_id)
