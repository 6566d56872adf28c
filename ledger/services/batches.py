"""Charge batch imports: a charge list in, its valid rows queued as ordinary charges in file order.

The import is one transaction: the batch row, every queued charge and every rejected row become
visible together at commit (a failed or refused upload leaves nothing behind), and the seller's
worker is woken once, after commit. Rows reach PostgreSQL with COPY, a chunk at a time, so a
large file costs a few statements, not one per row, and memory stays flat.

Progress is counted from the charges themselves (index on batch, status): the workers settle
batch charges like any other and never touch the batch row, so nothing serializes them."""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework import status

from core.errors import DomainError
from core.models import Seller
from ledger import events
from ledger.csv_import import ChargeListReader, FileRefusedError, RowError
from ledger.errors import SellerInactiveError
from ledger.models import ChargeBatch
from ledger.services.idempotency import create_once

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
MAX_REPORTED_ERRORS = 100

_COPY_CHARGES = """
    COPY ledger_charge
        (seller_id, phone_number, amount, reference, status, batch_id, batch_line, request_fingerprint, created_at)
    FROM STDIN WITH (FORMAT csv)
"""
_COPY_REJECTED = """
    COPY ledger_chargebatchrejectedrow (batch_id, line, phone_number, amount, reference, error)
    FROM STDIN WITH (FORMAT csv)
"""


class BatchFileRefusedError(DomainError):
    """Nothing of the file was queued: it is unreadable, or none of its rows is valid."""

    code = "invalid"
    http_status = status.HTTP_400_BAD_REQUEST
    default_detail = "The file cannot be imported."

    def __init__(self, detail: str | None = None, *, row_errors: list[dict] | None = None):
        super().__init__(detail)
        self.row_errors = row_errors or []


class BatchFileTooLargeError(DomainError):
    code = "file_too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."


ProgressCallback = Callable[[int, int], None]  # (rows read, bytes read)


def batch_max_bytes() -> int:
    return settings.LEDGER_BATCH_MAX_BYTES


def batch_import(
    *,
    seller: Seller,
    file: BinaryIO,
    filename: str = "",
    idempotency_key: str | None = None,
    created_by=None,
    on_progress: ProgressCallback | None = None,
) -> tuple[ChargeBatch, bool]:
    """Validate every row of a charge list and queue the valid ones. Returns (batch, created).

    The same key with the same file returns the original batch; with another file it is refused.
    Raises BatchFileTooLargeError, BatchFileRefusedError, IdempotencyKeyReusedError."""
    if not seller.user.is_active:
        raise SellerInactiveError()
    size = _size_of(file)
    if size > batch_max_bytes():
        raise BatchFileTooLargeError(f"The file is {size} bytes; the limit is {batch_max_bytes()} bytes.")
    # The content hash is the request's fingerprint: a retried upload of the same bytes under the
    # same key is recognised before any row is parsed again.
    started = time.monotonic()
    fingerprint = _sha256(file)

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
        try:
            _load_rows(batch, file, on_progress)
        except FileRefusedError as exc:
            raise BatchFileRefusedError(exc.message) from exc
        events.intents_recorded(seller_id=seller.pk)
        loaded = time.monotonic()
    logger.info(
        "charge batch %s imported: %s rows (%s invalid) in %.2fs, commit %.2fs",
        batch.pk,
        batch.total_rows,
        batch.invalid_rows,
        loaded - started,
        time.monotonic() - loaded,
        extra={"event": "batch.imported", "batch_id": batch.pk, "seller_id": seller.pk, "rows": batch.total_rows},
    )
    return batch, True


def _load_rows(batch: ChargeBatch, file: BinaryIO, on_progress: ProgressCallback | None) -> None:
    reader = ChargeListReader(file)
    created_at = timezone.now().isoformat()
    charges, rejected = io.StringIO(), io.StringIO()
    charge_out = csv.writer(charges, quoting=csv.QUOTE_NONNUMERIC)
    rejected_out = csv.writer(rejected, quoting=csv.QUOTE_NONNUMERIC)
    valid = invalid = 0
    errors: list[RowError] = []

    with connection.cursor() as cursor:
        for row in reader:
            if row.errors:
                invalid += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.extend(row.errors[: MAX_REPORTED_ERRORS - len(errors)])
                raw = row.raw
                rejected_out.writerow(
                    (
                        batch.pk,
                        row.line,
                        raw.get("phone_number", ""),
                        raw.get("amount", ""),
                        raw.get("reference", ""),
                        "; ".join(f"{e.field}: {e.message}" for e in row.errors),
                    )
                )
            else:
                valid += 1
                charge_out.writerow(
                    (
                        batch.seller_id,
                        row.phone_number,
                        row.amount,
                        row.reference,
                        "queued",
                        batch.pk,
                        row.line,
                        "",
                        created_at,
                    )
                )
            if (valid + invalid) % CHUNK_ROWS == 0:
                _flush(cursor, charges, _COPY_CHARGES)
                _flush(cursor, rejected, _COPY_REJECTED)
                if on_progress:
                    on_progress(valid + invalid, reader.bytes_read())
        _flush(cursor, charges, _COPY_CHARGES)
        _flush(cursor, rejected, _COPY_REJECTED)
    if on_progress:
        on_progress(valid + invalid, reader.bytes_read())

    reported = [error.as_dict() for error in errors]
    if valid + invalid == 0:
        raise BatchFileRefusedError("The file has a header but no data rows.")
    if valid == 0:
        raise BatchFileRefusedError(
            f"None of the {invalid} rows is valid; nothing was queued. First error: line {errors[0].line}, "
            f"{errors[0].field}: {errors[0].message}",
            row_errors=reported,
        )
    batch.status = ChargeBatch.Status.QUEUED
    batch.columns = reader.columns
    batch.total_rows, batch.valid_rows, batch.invalid_rows = valid + invalid, valid, invalid
    batch.errors = reported
    batch.save(update_fields=["status", "columns", "total_rows", "valid_rows", "invalid_rows", "errors"])


def _flush(cursor, buffer: io.StringIO, sql: str) -> None:
    if buffer.tell() == 0:
        return
    buffer.seek(0)
    cursor.copy_expert(sql, buffer)
    buffer.seek(0)
    buffer.truncate()


def _size_of(file: BinaryIO) -> int:
    size = getattr(file, "size", None)
    if size is not None:
        return size
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        position = file.seek(0, os.SEEK_END)
        file.seek(0)
        return position


def _sha256(file: BinaryIO) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


# --- Progress and results -------------------------------------------------------------------


@dataclass(frozen=True)
class BatchCounts:
    queued: int
    succeeded: int
    failed: int
    succeeded_amount: int


_COUNTS = """
    SELECT batch_id,
           count(*) FILTER (WHERE status = 'queued'),
           count(*) FILTER (WHERE status = 'succeeded'),
           count(*) FILTER (WHERE status = 'failed'),
           coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0),
           max(settled_at)
      FROM ledger_charge WHERE batch_id = ANY(%s) GROUP BY batch_id
"""
# Once a batch has no queued charge its counts can no longer change: freeze them, once.
_COMPLETE = """
    UPDATE ledger_chargebatch SET status = 'completed', completed_at = %s, succeeded = %s, failed = %s,
           succeeded_amount = %s
     WHERE id = %s AND status = 'queued'
"""


def batch_progress(*, batches: list[ChargeBatch]) -> list[ChargeBatch]:
    """Fill in queued/succeeded/failed/succeeded_amount on each batch (one query for all that are
    still running) and mark the fully settled ones completed."""
    running = [b for b in batches if b.status == ChargeBatch.Status.QUEUED]
    for batch in batches:
        if batch.status == ChargeBatch.Status.COMPLETED:
            batch.queued = 0
    if not running:
        return batches
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS, [[b.pk for b in running]])
        counts = {row[0]: row[1:] for row in cursor.fetchall()}
        for batch in running:
            queued, succeeded, failed, amount, last_settled = counts.get(batch.pk, (0, 0, 0, 0, None))
            batch.queued, batch.succeeded, batch.failed, batch.succeeded_amount = queued, succeeded, failed, amount
            if queued == 0:
                # The batch's completion time is when its last charge settled, not when someone looked.
                completed_at = last_settled or timezone.now()
                cursor.execute(_COMPLETE, [completed_at, succeeded, failed, amount, batch.pk])
                batch.status, batch.completed_at = ChargeBatch.Status.COMPLETED, completed_at
    return batches


RESULT_COLUMNS = ["charge_id", "status", "failure_code", "balance_after", "line", "error"]
# Two index-ordered reads merged here: PostgreSQL would sort a UNION ALL of a million rows before
# sending the first one.
_RESULT_CHARGES = """
    SELECT batch_line, phone_number, amount, reference, id, status, failure_code, balance_after, NULL
      FROM ledger_charge WHERE batch_id = %s ORDER BY batch_line
"""
_RESULT_REJECTED = """
    SELECT line, phone_number, amount, reference, NULL, 'invalid', NULL, NULL, error
      FROM ledger_chargebatchrejectedrow WHERE batch_id = %s ORDER BY line
"""


def batch_results(*, batch: ChargeBatch) -> tuple[list[str], Iterator[tuple]]:
    """The results file's header and rows: the input columns in the input's order, then the
    outcome, one row per input row in file order (rejected rows as `invalid` with their error).
    Valid rows show the phone number as charged (E.164). Streams from server-side cursors inside
    one read-only transaction, so memory stays flat and both reads see the same moment."""
    header = list(batch.columns) + RESULT_COLUMNS
    positions = {"phone_number": 1, "amount": 2, "reference": 3}
    picks = [positions[name] for name in batch.columns]

    def read(sql: str) -> Iterator[tuple]:
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, [batch.pk])
            while records := cursor.fetchmany(2000):
                yield from records

    def rows() -> Iterator[tuple]:
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            merged = heapq.merge(read(_RESULT_CHARGES), read(_RESULT_REJECTED), key=itemgetter(0))
            for record in merged:
                line, charge_id, state, failure, balance_after, error = record[0], *record[4:]
                yield (*(record[i] for i in picks), charge_id, state, failure, balance_after, line, error)

    return header, rows()
