"""The only places that enqueue. Always after commit: a worker must never wake up before the
intent it should settle is visible, and a rolled-back request must enqueue nothing. (A provider's
callback is the exception: nothing of it is in the database, so it is queued before the web
answers, and a failure to queue it is the provider's 503.)

Tasks are published by name (`SETTLE_SELLER`, `SETTLE_SHARD`), so this module never imports
`workers.tasks`, which imports it."""

import logging
from functools import cache

import kombu.exceptions
import redis
from django.conf import settings
from django.db import transaction

from celery_app import app
from core import redis_client
from core.redis_script import ThreadScript
from ledger.errors import CallbackNotQueuedError
from workers.routing import FULFIL_QUEUE, RECONCILE_QUEUE, queue_for, shard_for, shard_queue

logger = logging.getLogger(__name__)

SETTLE_SELLER = "ledger.settle_seller"
SETTLE_SHARD = "ledger.settle_shard"
FULFIL = "ledger.fulfil"
APPLY_CALLBACK = "ledger.apply_callback"

# Fail fast when Redis is away: a wake-up is only a hint, the sweeper re-sends it, and a request
# must not hang on the broker.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}
# What a publish raises when the broker cannot be reached (kombu wraps the transport's errors).
BROKER_ERRORS = (redis.RedisError, kombu.exceptions.OperationalError, OSError)


def wake_seller(seller_id: int) -> None:
    app.send_task(
        SETTLE_SELLER,
        kwargs={"seller_id": seller_id},
        queue=queue_for(seller_id),
        retry_policy=PUBLISH_RETRY_POLICY,
        ignore_result=True,
    )


def wake_seller_on_commit(seller_id: int) -> None:
    """Subscribes to the ledger's `intents_recorded`: wake the seller's worker once the current
    transaction commits (at once outside one).
    Django drops the callbacks of rolled-back (save)points, so a rolled-back intent enqueues
    nothing. A broker outage never turns a recorded intent into an error: the callback logs it, and
    `robust=True` keeps anything else failing after the commit out of the response too. (The
    callback is a function, not a `functools.partial`: Django's robust handler logs a failure
    with the callback's `__qualname__`, and a partial has none, so that log call itself raised.)
    Several intents of one seller in one transaction register several callbacks: the first claims
    the shard's wake-up, the others find it claimed and publish nothing."""

    def wake_seller_after_commit() -> None:
        try:
            wake_seller_coalesced(seller_id)
        except BROKER_ERRORS as exc:
            # The intent is committed: this request succeeded. Its seller is settled by its shard
            # worker's recovery when it reconnects to the broker, or woken by the sweeper.
            logger.warning(
                "wake-up of seller %s not published (%s): its shard worker settles it on reconnecting, "
                "or the sweeper wakes it",
                seller_id,
                exc.__class__.__name__,
                extra={"event": "ledger.wake_up_lost", "seller_id": seller_id},
            )

    wake_seller_after_commit.ledger_seller_id = seller_id  # type: ignore[attr-defined]  (tests look for it)
    transaction.on_commit(wake_seller_after_commit, robust=True)


def fulfil_on_commit(charge_ids: list[int]) -> None:
    """Subscribes to the ledger's `charges_reserved`: after the settle that reserved them commits,
    send the charges to the fulfilment workers in tasks of PROVIDER_BATCH. A lost publish costs latency,
    never money: a shard worker's recovery on (re)connect sends again its shards' reserved charges
    (this publish dies with a worker killed after the commit), and the reconciler whatever stayed
    reserved longer than PROVIDER_REDISPATCH_AFTER (ledger/fulfilment/reconcile.py)."""

    def fulfil_after_commit() -> None:
        size = settings.PROVIDER_BATCH
        try:
            # A settle reserves up to thousands at once: their tasks leave in one pipeline to Redis
            # (kombu's publish batch), not a round trip and a new client each.
            with app.producer_or_acquire() as producer, producer.batch():
                for start in range(0, len(charge_ids), size):
                    send_fulfil(charge_ids[start : start + size], producer=producer)
        except BROKER_ERRORS as exc:
            logger.warning(
                "fulfilment of %s charges not published (%s): the reconciler sends them again",
                len(charge_ids),
                exc.__class__.__name__,
                extra={"event": "ledger.fulfil_lost", "charge_ids": charge_ids[:100]},
            )

    transaction.on_commit(fulfil_after_commit, robust=True)


def send_fulfil(charge_ids: list[int], *, countdown: float | None = None, producer=None) -> None:
    kwargs = {"charge_ids": list(charge_ids)}
    app.send_task(
        FULFIL,
        kwargs=kwargs,
        # What Flower shows of the task, as Celery would write it, without Celery's own `saferepr`:
        # it walks the list in Python and was the largest cost of a settle that reserves thousands.
        argsrepr="()",
        kwargsrepr=repr(kwargs),
        queue=FULFIL_QUEUE,
        countdown=countdown,
        retry_policy=PUBLISH_RETRY_POLICY,
        ignore_result=True,
        producer=producer,
    )


def apply_callback_later(*, provider: str, notice: dict) -> None:
    """Subscribes to the ledger's `callback_received`: queue the callback for the fulfilment
    worker (`ledger.fulfil.reconcile`, beside the reconciler's lookups: never behind a backlog of
    sends). Published before the web answers the provider, as nothing of it is in the database: a
    callback that cannot be queued is answered 503 and the provider sends it again (and the
    reconciler's lookups find what it said in any case)."""
    try:
        app.send_task(
            APPLY_CALLBACK,
            kwargs={"provider": provider, "notice": notice},
            queue=RECONCILE_QUEUE,
            retry_policy=PUBLISH_RETRY_POLICY,
            ignore_result=True,
        )
    except BROKER_ERRORS as exc:
        logger.warning(
            "callback of provider %s not queued (%s): answered 503",
            provider,
            exc.__class__.__name__,
            extra={"event": "ledger.callback_not_queued", "provider": provider},
        )
        raise CallbackNotQueuedError() from exc


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
# costs tasks of its own; per shard it is at most LEDGER_WAKE_BURST tasks a second plus one per
# cooldown.
#
# Cooldown: past its first `LEDGER_WAKE_BURST` settles in a second, taking a shard's set also
# marks, for `LEDGER_WAKE_COOLDOWN` seconds, that its settle started; a wake-up claimed inside that
# window is published with a countdown to its end, so under load each shard is settled in a few
# batches a second, and the flag stays set meanwhile, so the window's commits publish nothing. A
# shard not settled within the window is woken at once, and so is a shard that settles rarely: at
# low rates a charge's two settles (its reservation, its provider's answer) each start as soon as
# they are asked for, instead of waiting out a cooldown meant to batch a busy shard's work.
#
# Losing a wake-up costs latency, never money, and for seconds at most. The flag lives
# WAKE_FLAG_TTL: a web process killed between its claim and its publish, or a worker killed while
# holding a countdown task (unacknowledged, so invisible to others until the broker's visibility
# timeout), leaves a flag that nobody clears, and every commit of the shard would publish nothing
# until it expires. A short TTL bounds that; a legitimately pending task older than it only costs
# one more, harmless, wake-up. A shard worker that starts, or reconnects to the broker, settles
# every waiting seller of its shards (`recover_shard`, from PostgreSQL): that covers the sellers a
# killed task had taken and a Redis that came back empty. And each shard worker watches its shards
# every second (workers/recovery.py): sellers waiting in the set with no flag (it expired with its
# publisher) get their task (`wake_orphaned_shard`), even if no commit follows, and sellers whose
# intents wait without progress are woken again. The sweeper (beat) still wakes
# every seller whose intents waited too long, with `wake_seller`, whatever the flag says.
WAKE_FLAG_TTL = 3

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

# KEYS: flag, cooldown, dirty set, settles this second; ARGV: cooldown in ms, burst. Returns the
# sellers to settle.
_TAKE_DIRTY = """
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) > 0 then
  local settles = redis.call('INCR', KEYS[4])
  if settles == 1 then redis.call('PEXPIRE', KEYS[4], 1000) end
  if settles > tonumber(ARGV[2]) then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
end
local sellers = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3])
return sellers
"""


# KEYS: flag, dirty set; ARGV: flag TTL. Claims the flag for sellers left in the set without one.
_CLAIM_ORPHANED = """
if redis.call('SCARD', KEYS[2]) > 0 and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""


@cache
def _broker_redis() -> redis.Redis:
    return redis_client.client(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)


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
    names = ("wake-pending", "settle-started", "dirty", "settles")
    return [f"{prefix}ledger:{name}:{int(shard)}" for name in names]


def wake_shard(
    shard: int, *, countdown: float | None = None, recover: bool = False, connected_at: float | None = None
) -> None:
    kwargs = {"shard": shard, "recover": True, "connected_at": connected_at} if recover else {"shard": shard}
    app.send_task(
        SETTLE_SHARD,
        kwargs=kwargs,
        queue=shard_queue(shard),
        countdown=countdown,
        retry_policy=PUBLISH_RETRY_POLICY,
        ignore_result=True,
    )


def recover_shard(shard: int, *, connected_at: float | None = None) -> None:
    """A settle of every seller of the shard with waiting intents, whatever Redis remembers, and a
    send of the shard's charges reserved before `connected_at` (epoch seconds): sent by a shard
    worker when it starts or reconnects to the broker (workers/recovery.py)."""
    wake_shard(shard, recover=True, connected_at=connected_at)


def wake_seller_coalesced(seller_id: int) -> None:
    """Claim the shard's wake-up and publish it if this commit set the flag. A Redis error
    propagates: the broker is that same Redis, so a publish would fail too."""
    shard = shard_for(seller_id)
    keys = _shard_keys(shard)
    left_ms = _claim_wake_up(keys=keys, args=[int(seller_id), WAKE_FLAG_TTL])
    if left_ms < 0:
        return
    try:
        wake_shard(shard, countdown=left_ms / 1000 if left_ms else None)
    except BROKER_ERRORS:
        # Not published: the flag must not silence the next commits' wake-ups.
        try:
            _broker_redis().delete(keys[0])
        except redis.RedisError:
            pass  # it expires within WAKE_FLAG_TTL
        raise


@cache
def _claim_orphaned():
    return _broker_redis().register_script(_CLAIM_ORPHANED)


def wake_orphaned_shard(shard: int) -> bool:
    """Publish the shard's task if sellers wait in its set and no task is pending (the flag's
    publisher died and the flag expired). Called every second by each shard worker."""
    shard_keys = _shard_keys(shard)
    if not _claim_orphaned()(keys=[shard_keys[0], shard_keys[2]], args=[WAKE_FLAG_TTL]):
        return False
    try:
        wake_shard(shard)
    except BROKER_ERRORS:
        _broker_redis().delete(shard_keys[0])
        raise
    return True


def take_dirty_sellers(shard: int) -> list[int]:
    """Reopen the shard's flag, start its cooldown once it is past its burst, and take the sellers
    whose commits asked for a settle since the last take. Called by the shard's task before it
    settles them."""
    cooldown_ms = int(settings.LEDGER_WAKE_COOLDOWN * 1000)
    sellers = _take_dirty()(keys=_shard_keys(shard), args=[cooldown_ms, settings.LEDGER_WAKE_BURST])
    return sorted(int(seller_id) for seller_id in sellers)
