"""Charge list uploads: the first of an import's two steps, in the web request (or the CLI).

`batch_upload` checks what the file's first bytes show, stores the file in PostgreSQL
(`ledger.batch_files`) and records the batch as `validating`; it never parses the whole file.
The import (`ledger.services.batch_import`) then reads the stored file on the import worker."""

import logging
import time
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.models import Seller
from ledger import events
from ledger.batch_files import batch_file_store, file_sha256, file_size
from ledger.csv_import import FileRefusedError, check_head
from ledger.errors import BatchFileRefusedError, BatchFileTooLargeError, SellerInactiveError
from ledger.models import ChargeBatch, ChargeBatchImport
from ledger.services.idempotency import create_once

logger = logging.getLogger(__name__)


def batch_max_bytes() -> int:
    return settings.LEDGER_BATCH_MAX_BYTES


def batch_upload(
    *,
    seller: Seller,
    file: BinaryIO,
    filename: str = "",
    idempotency_key: str | None = None,
    created_by=None,
    start_import: bool = True,
) -> tuple[ChargeBatch, bool]:
    """Store a charge list as a `validating` batch and (after commit) start its import. Returns
    (batch, created): the same key with the same bytes returns the original batch; with other
    bytes it is refused. `start_import=False` leaves the import to the caller (the CLI runs it
    in-process). Raises BatchFileTooLargeError, BatchFileRefusedError, IdempotencyKeyReusedError."""
    if not seller.user.is_active:
        raise SellerInactiveError()
    size = file_size(file)
    if size > batch_max_bytes():
        raise BatchFileTooLargeError(f"The file is {size} bytes; the limit is {batch_max_bytes()} bytes.")
    started = time.monotonic()
    # The content hash is the request's fingerprint: a retried upload of the same bytes under the
    # same key is recognised without storing or parsing it again.
    fingerprint = file_sha256(file)
    try:
        check_head(file, size=size)
    except FileRefusedError as exc:
        raise BatchFileRefusedError(exc.message) from exc

    with transaction.atomic():
        batch, created = create_once(
            model=ChargeBatch,
            seller_id=seller.pk,
            key=idempotency_key,
            fingerprint_=fingerprint,
            create=lambda: ChargeBatch.objects.create(
                seller=seller,
                filename=filename[:255],
                status=ChargeBatch.Status.VALIDATING,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                file_size=size,
                created_by=created_by,
            ),
        )
        if not created:
            return batch, False
        ChargeBatchImport.objects.create(batch=batch, seen_at=timezone.now())
        batch_file_store(batch_id=batch.pk, file=file)
        if start_import:
            events.batch_uploaded(batch_id=batch.pk)
    logger.info(
        "charge batch %s stored: %s bytes in %.2fs",
        batch.pk,
        size,
        time.monotonic() - started,
        extra={"event": "batch.stored", "batch_id": batch.pk, "seller_id": seller.pk, "bytes": size},
    )
    return batch, True
