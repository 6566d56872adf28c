"""Celery tasks of the statements (ledger/statements/): the periodic signing of every active
seller's chain head, statement builds and the monthly statements. All on the import worker's queue
(long or rare work, one task at a time, never a shard's) and idempotent: a checkpoint or statement
already made is answered, not made twice."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError, transaction

from workers import dispatch

logger = logging.getLogger(__name__)

_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 5,
    "max_retries": 5,
}


@shared_task(name="ledger.sign_checkpoints", ignore_result=True, acks_late=True, **_RETRY)
def sign_checkpoints_task() -> int:
    from ledger.statements.checkpoints import checkpoints_sign_active

    signed = checkpoints_sign_active()
    logger.log(
        logging.INFO if signed else logging.DEBUG,
        "signed %s checkpoints",
        signed,
        extra={"event": "ledger.checkpoints_signed", "count": signed},
    )
    return signed


@shared_task(
    name="ledger.build_statement",
    ignore_result=True,
    acks_late=True,
    # A month of a million entries takes tens of seconds; still below the broker's visibility timeout.
    soft_time_limit=480,
    time_limit=540,
    **_RETRY,
)
def build_statement_task(statement_id: int) -> None:
    from ledger.statements.build import statement_build

    statement_build(statement_id=statement_id)


def build_statement_on_commit(statement_id: int) -> None:
    """Subscribes to the ledger's `statement_requested`: publish the build once the request is
    committed. robust: a broker outage must not fail the request; the monthly sweep builds what
    is still queued."""
    transaction.on_commit(
        lambda: build_statement_task.apply_async(
            kwargs={"statement_id": statement_id}, retry_policy=dispatch.PUBLISH_RETRY_POLICY
        ),
        robust=True,
    )


@shared_task(name="ledger.monthly_statements", ignore_result=True, acks_late=True, **_RETRY)
def monthly_statements_task() -> int:
    """Last month's statement for every seller with entries in it, and a build for every statement
    still queued (one whose publish was lost)."""
    from ledger.statements.monthly import statements_monthly, statements_unbuilt

    created = statements_monthly()
    for statement_id in statements_unbuilt():
        build_statement_task.apply_async(kwargs={"statement_id": statement_id})
    return created
