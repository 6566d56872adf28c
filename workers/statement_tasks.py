"""Celery tasks of the statements (ledger/statements/): the periodic signing of every active
seller's chain head, statement builds and the monthly statements. All on the import worker's queue
(long or rare work, one task at a time, never a shard's) and idempotent: a checkpoint or statement
already made is answered, not made twice."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

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
