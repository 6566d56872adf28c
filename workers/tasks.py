"""Celery tasks: ids in, one service call, done. Domain errors are final outcomes recorded on
the intent; only transient database errors retry."""

import logging

import redis
from celery import shared_task
from celery.signals import task_prerun
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from ledger.audit import audit_ledger_incremental
from ledger.fulfilment.callbacks import ReversalNotPosted, apply_callback
from ledger.selectors import sellers_waiting, sellers_with_stale_intents
from ledger.services.settlement import settle_seller, settle_sellers
from providers.base import ProviderError
from workers import dispatch, progress
from workers.routing import shard_for

logger = logging.getLogger(__name__)


@task_prerun.connect
def _drop_unusable_connection(**_) -> None:
    """Connections are reused across tasks (CELERY_DB_REUSE_MAX); one left broken by a failed
    task, or past CONN_MAX_AGE, is closed here so the next task opens a fresh one."""
    close_old_connections()


@shared_task(
    name="ledger.settle_seller",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=None,
)
def settle_seller_task(seller_id: int) -> None:
    """One seller: the sweeper's wake-ups, a drain that ran out of time, and a seller whose
    settle inside a shard task hit a transient database error (this task retries it)."""
    _settle(seller_id)


@shared_task(
    name="ledger.settle_shard",
    ignore_result=True,
    acks_late=True,
    # Redis (the take) or, for a recovery, the database read of who waits; a retried recovery
    # reads PostgreSQL again, so the sellers it had taken from Redis are not lost.
    autoretry_for=(redis.RedisError, OperationalError, InterfaceError),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=None,
)
def settle_shard_task(shard: int, recover: bool = False, connected_at: float | None = None) -> None:
    """Every seller of the shard whose commits asked for a settle (workers/dispatch.py), in one
    transaction while their backlogs are small (ledger.services.settlement.settle_sellers).
    `recover` (a worker that started or reconnected, workers/recovery.py) adds every seller of
    the shard with waiting intents in PostgreSQL, whatever Redis lost, and first sends again the
    shard's charges reserved before the worker connected (`connected_at`), whose send may have
    been lost with the previous process."""
    seller_ids = dispatch.take_dirty_sellers(shard)
    if recover:
        _send_reserved_again(shard, reserved_before=connected_at)
        waiting = [seller_id for seller_id in sellers_waiting() if shard_for(seller_id) == shard]
        seller_ids = sorted({*seller_ids, *waiting})
        logger.log(
            logging.INFO if seller_ids else logging.DEBUG,  # every start and reconnect sends one per shard
            "recovering shard=%s: %s sellers waiting",
            shard,
            len(seller_ids),
            extra={"event": "ledger.shard_recovered", "shard": shard, "seller_ids": seller_ids[:100]},
        )
    if not seller_ids:
        return
    try:
        outcomes = settle_sellers(seller_ids=seller_ids)
    except (OperationalError, InterfaceError):
        # Taken from the set already: hand each seller to its own task, which retries with backoff.
        logger.warning("settling shard %s failed; retrying its sellers one by one", shard, exc_info=True)
        close_old_connections()
        for seller_id in seller_ids:
            dispatch.wake_seller(seller_id)
        return
    settled = {sid: o for sid, o in outcomes.items() if o.intents}
    if settled:
        logger.info(
            "settled shard=%s sellers=%s intents=%s",
            shard,
            len(settled),
            sum(o.intents for o in settled.values()),
            extra={"event": "ledger.shard_settled", "shard": shard, "seller_ids": sorted(settled)[:100]},
        )
        progress.settled(shard=shard, runs=len(settled), intents=sum(o.intents for o in settled.values()))
    for seller_id, outcome in outcomes.items():
        if outcome.more_pending:
            dispatch.wake_seller(seller_id)


def _send_reserved_again(shard: int, *, reserved_before: float | None) -> None:
    """The send of reserved charges is published by the settle that reserved them, after its
    commit (`dispatch.fulfil_on_commit`): a worker killed between the two, or a broker lost
    meanwhile, leaves them held and unsent, and nothing else sends them before the reconciler's
    PROVIDER_REDISPATCH_AFTER. Only charges reserved before the worker connected: what its own
    settles reserve since (the backlog of its downtime, settled by the wake-ups queued ahead of
    this task) they sent themselves. A charge whose send was published after all gets a second task
    that finds it claimed and does nothing (fulfilment/service.py), at the price of its share of
    the rate limit. `reserved_at` is the settling worker's clock: a standby on another host takes
    over LEDGER_SHARD_LEASE_SECONDS after the death at the earliest, far more than any skew."""
    from ledger.fulfilment.reconcile import charges_reserved_of_shard

    charge_ids = charges_reserved_of_shard(shard=shard, shards=settings.LEDGER_SHARDS, reserved_before=reserved_before)
    if not charge_ids:
        return
    size = settings.PROVIDER_BATCH
    try:
        for start in range(0, len(charge_ids), size):
            dispatch.send_fulfil(charge_ids[start : start + size])
    except dispatch.BROKER_ERRORS as exc:  # lost again: the next connect's recovery or the reconciler
        logger.warning("recovering shard=%s: reserved charges not sent again (%s)", shard, exc.__class__.__name__)
        return
    logger.info(
        "recovering shard=%s: sent again %s reserved charges",
        shard,
        len(charge_ids),
        extra={"event": "ledger.fulfil_resent", "shard": shard, "charge_ids": charge_ids[:100]},
    )


def _settle(seller_id: int) -> None:
    outcome = settle_seller(seller_id=seller_id)
    if outcome.intents:
        logger.info(
            "settled seller=%s intents=%s batches=%s",
            seller_id,
            outcome.intents,
            outcome.batches,
            extra={
                "event": "ledger.seller_settled",
                "seller_id": seller_id,
                "intents": outcome.intents,
                "batches": outcome.batches,
            },
        )
        progress.settled(shard=shard_for(seller_id), intents=outcome.intents)
    if outcome.more_pending:
        dispatch.wake_seller(seller_id)


@shared_task(name="ledger.sweep_stale_sellers", ignore_result=True)
def sweep_stale_sellers_task() -> int:
    """Wake every seller whose intents waited too long: a lost publish, a flushed broker or a
    killed worker cost latency, never money."""
    seller_ids = sellers_with_stale_intents(older_than_seconds=settings.LEDGER_SWEEP_AFTER)
    for seller_id in seller_ids:
        dispatch.wake_seller(seller_id)
    if seller_ids:
        logger.warning(
            "sweeper woke %s sellers with stale intents",
            len(seller_ids),
            extra={"event": "ledger.sweep", "seller_ids": seller_ids[:100]},
        )
    return len(seller_ids)


@shared_task(name="ledger.audit", ignore_result=False)
def audit_task() -> dict:
    """The periodic audit: what is new since each seller's checkpoint, plus a rolling full pass
    (`ledger/audit/incremental.py`). The result (stored) is what on-call and the metrics read."""
    run = audit_ledger_incremental(full_sellers=settings.LEDGER_AUDIT_FULL_SELLERS_PER_RUN)
    for breach in run.breaches:
        logger.error(
            "ledger audit breach: %s",
            breach,
            extra={
                "event": "ledger.audit_breach",
                "seller_id": breach.seller_id,
                "entry_id": breach.entry_id,
                "invariant": breach.invariant,
            },
        )
    summary = run.summary()
    # INFO when it had something new to check (entries no run had verified) or to say; the hourly
    # run over an idle ledger, which only re-verifies its rolling slice, at DEBUG.
    logger.log(
        logging.INFO if run.breaches or run.new_entries or run.skipped else logging.DEBUG,
        "ledger audit: %s breaches, %s sellers (%s in full), %s entries in %.1f s%s",
        summary["breach_count"],
        summary["sellers"],
        summary["full_sellers"],
        summary["entries"],
        run.seconds,
        " (skipped: another audit was running)" if run.skipped else "",
        extra={"event": "ledger.audit_run", **{k: v for k, v in summary.items() if k != "breaches"}},
    )
    return summary


# --- Charge list imports (ledger.imports, a queue of their own) --------------------------------
# Long (a million rows is tens of seconds), so never on a shard or the default queue where they
# would delay settling or the sweeper. Idempotent: the import commits all of its rows or none, and
# a run that finds its batch no longer `validating` does nothing, so a redelivery or the resume
# sweeper's restart after a killed worker queues every valid row exactly once.


@shared_task(
    name="ledger.import_batch",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,
    # Longer than the settle's limits (a 100 MiB file), still below the broker's visibility timeout.
    soft_time_limit=480,
    time_limit=540,
)
def import_batch_task(batch_id: int) -> None:
    from ledger.services.batch_import import batch_import_run

    batch_import_run(batch_id=batch_id)


def import_batch_on_commit(batch_id: int) -> None:
    """Subscribes to the ledger's `batch_uploaded`: publish the import once the stored file is
    committed. robust: a broker outage must not fail the upload; the resume sweeper starts it later."""
    from django.db import transaction

    transaction.on_commit(
        lambda: import_batch_task.apply_async(
            kwargs={"batch_id": batch_id}, retry_policy=dispatch.PUBLISH_RETRY_POLICY
        ),
        robust=True,
    )


@shared_task(name="ledger.resume_stalled_imports", ignore_result=True)
def resume_stalled_imports_task() -> int:
    """Start again every import whose worker went silent (killed mid-import: its transaction was
    rolled back, and its message waits for the broker's visibility timeout)."""
    from ledger.services.batch_import import batch_imports_stalled

    batch_ids = batch_imports_stalled(older_than_seconds=settings.LEDGER_IMPORT_RESUME_AFTER)
    for batch_id in batch_ids:
        import_batch_task.apply_async(kwargs={"batch_id": batch_id}, retry_policy=dispatch.PUBLISH_RETRY_POLICY)
    if batch_ids:
        logger.warning(
            "restarted %s stalled imports",
            len(batch_ids),
            extra={"event": "batch.import_restarted", "batch_ids": batch_ids[:100]},
        )
    return len(batch_ids)


# --- Fulfilment (ledger.fulfil: a threads worker of its own; docs/provider.md) ----------------


@shared_task(
    name="ledger.fulfil",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=None,
)
def fulfil_task(charge_ids: list[int]) -> None:
    """Send reserved charges to the provider (ledger/fulfilment/service.py). What the gate held
    back (rate limit, Retry-After, an open breaker) is sent again later by a task of its own."""
    from ledger.fulfilment.service import fulfil_charges

    run = fulfil_charges(charge_ids)
    if run.retry_later:
        dispatch.send_fulfil(run.retry_later, countdown=run.countdown)


@shared_task(
    name="ledger.apply_callback",
    ignore_result=True,
    acks_late=True,
    # The provider could not be asked, or a reversal waits for its charge's success to be posted:
    # asked again for about three hours. Past that the reconciler's lookups and the daily close
    # find what the callback said (docs/provider.md).
    autoretry_for=(ProviderError, ReversalNotPosted, OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=600,
    max_retries=25,
)
def apply_callback_task(provider: str, notice: dict) -> None:
    """A provider's callback, queued by the web once its signature and shape were checked
    (ledger/fulfilment/callbacks.py)."""
    apply_callback(provider, notice)


@shared_task(name="ledger.reconcile_fulfilment", ignore_result=True)
def reconcile_fulfilment_task() -> None:
    """Beat: send again reserved charges nobody sent, and look up the open ones whose check is due."""
    from ledger.fulfilment.reconcile import charges_to_redispatch, look_up_open_charges

    stale = charges_to_redispatch() if _fulfilment_idle() else []
    size = settings.PROVIDER_BATCH
    for start in range(0, len(stale), size):
        dispatch.send_fulfil(stale[start : start + size])
    if stale:
        logger.warning(
            "sent again %s reserved charges nobody had sent",
            len(stale),
            extra={"event": "ledger.fulfil_redispatched", "charge_ids": stale[:100]},
        )
    look_up_open_charges()


def _fulfilment_idle() -> bool:
    """Nothing waits to be sent: no `ledger.fulfil` task in the broker and the provider's gate
    open. Reserved charges still unsent then had their task lost; while a backlog drains, or the
    breaker or a Retry-After holds sends back, they are merely waiting, and sending them again
    would only pile duplicate tasks (each a no-op, after its claim) in front of new charges."""
    from ledger.fulfilment.gate import gate_for
    from providers import provider_names
    from workers.broker import broker_client, queue_depths
    from workers.routing import FULFIL_QUEUE

    try:
        for gate in (gate_for(name) for name in provider_names()):
            if gate.breaker_state() != "closed" or gate.paused_for() > 0:
                return False
        return queue_depths([FULFIL_QUEUE], broker_client())[FULFIL_QUEUE] == 0
    except redis.RedisError:
        return False


# The statements' and the provider accounts' tasks live in modules of their own; importing them
# here registers them wherever Celery autodiscovers `workers.tasks`.
from workers import provider_account_tasks, statement_tasks  # noqa: E402, F401
