"""Celery tasks of the catalog: ids (or a number) in, a service call, done.

Queues: the catalog has no worker of its own. The sync is long and rare, so it runs on the import
worker's queue (one task at a time in a process of its own, never a shard worker's); a number
lookup is a short provider call, so it runs beside the reconciler's lookups on the fulfilment
worker (threads, made for waiting on the provider). Both queues are consumed by every stack
(workers/commands.py; tests/catalog/test_tasks.py checks it)."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction

from catalog.services.lookups import number_lookup_record
from catalog.services.sync import catalog_sync
from providers import get_provider, provider_names
from providers.base import ProviderError

logger = logging.getLogger(__name__)

SYNC_QUEUE = "ledger.imports"  # workers.routing.IMPORTS_QUEUE
LOOKUP_QUEUE = "ledger.fulfil.reconcile"  # workers.routing.RECONCILE_QUEUE
SYNC_TIME_LIMITS = {"soft_time_limit": 540, "time_limit": 570}  # below the broker's visibility_timeout (600 s)


def lookup_number_on_commit(msisdn: str) -> None:
    """Asks the provider about the number once the caller's transaction commits."""
    transaction.on_commit(
        lambda: lookup_number_task.apply_async(args=[msisdn], queue=LOOKUP_QUEUE, ignore_result=True), robust=True
    )


@shared_task(
    name="catalog.sync",
    queue=SYNC_QUEUE,
    ignore_result=False,  # an admin reads what the last syncs did in the task results
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
    **SYNC_TIME_LIMITS,
)
def sync_task() -> dict:
    """Every configured provider's catalog, one after the other (routes name other providers'
    products). One provider: its summary; several: each one's by name."""
    results = {}
    for name in provider_names():
        try:
            results[name] = catalog_sync(provider=get_provider(name)).as_dict()
        except ProviderError as exc:
            logger.warning("catalog sync of %s skipped: %s", name, exc, extra={"event": "catalog.sync_failed"})
            results[name] = {"error": str(exc)}
    return next(iter(results.values())) if len(results) == 1 else results


@shared_task(
    name="catalog.lookup_number",
    queue=LOOKUP_QUEUE,
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError, ProviderError),
    retry_backoff=2,
    max_retries=3,
)
def lookup_number_task(msisdn: str) -> None:
    number_lookup_record(provider=get_provider(), msisdn=msisdn)
