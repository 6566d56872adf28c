"""Celery tasks of our accounts at the providers (ledger/provider_account/): the float's poll, on
the reconciler's queue (a provider call that must not wait behind a backlog of sends), and the
daily close, on the import worker's queue (long work, one at a time, never a shard's). Both
idempotent: a poll records the balance as it is, a close run again replaces its day's result."""

import logging
from datetime import date

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction

from workers import dispatch

logger = logging.getLogger(__name__)


@shared_task(name="ledger.poll_provider_float", ignore_result=True)
def poll_provider_float_task() -> None:
    """Beat, every PROVIDER_FLOAT_INTERVAL: every configured provider's balance."""
    from ledger.provider_account.floats import poll_float
    from providers import get_provider, provider_names

    for name in provider_names():
        poll_float(get_provider(name))


@shared_task(
    name="ledger.provider_close",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=5,
    soft_time_limit=480,
    time_limit=540,
)
def provider_close_task(day: str, provider: str | None = None) -> None:
    from ledger.provider_account.close import close_day
    from providers import get_provider

    close_day(get_provider(provider), date.fromisoformat(day))


def provider_close_on_commit(day: date, provider: str | None = None) -> None:
    """Publish the close of a provider (None: the default one) once the request that queued it is
    committed."""
    transaction.on_commit(
        lambda: provider_close_task.apply_async(
            kwargs={"day": day.isoformat(), "provider": provider}, retry_policy=dispatch.PUBLISH_RETRY_POLICY
        )
    )
