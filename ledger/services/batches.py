"""Charge batch imports: a charge list in, its valid rows queued as ordinary charges in file order.

Two steps, two processes. `batch_upload` (the web request, or the CLI) checks what the file's
first bytes show, stores the file in PostgreSQL and records the batch as `validating`; it never
parses the whole file. `batch_import_run` (the `ledger.import_batch` task on the import worker's
own queue, or the CLI in-process) reads the stored file, validates every row and, in one
transaction, COPYs the valid rows into charges and the invalid ones into rejected rows and flips
the batch to `queued` (or `rejected` when nothing of it can be queued); the seller's worker is
woken after that commit. A run killed half way leaves nothing, and a run finding the batch no
longer `validating` does nothing: re-running after a crash queues every valid row exactly once.

Progress while validating (`ChargeBatchImport`) is written by the import over a second,
autocommitted connection; outcomes afterwards are counted by the settle (`ledger.posting`).
Reads only read."""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import cache
from operator import itemgetter
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models import NOT_PROVIDED
from django.utils import timezone
from rest_framework import status

from core.errors import DomainError
from core.models import Seller
from ledger import events
from ledger.batch_files import batch_file_delete, batch_file_open, batch_file_store
from ledger.csv_import import NO_DATA_ROWS, ChargeListReader, FileRefusedError, RowError, check_head
from ledger.errors import SellerInactiveError
from ledger.models import Charge, ChargeBatch, ChargeBatchImport, ChargeBatchRejectedRow
from ledger.services.idempotency import create_once

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
MAX_REPORTED_ERRORS = 100


class BatchFileRefusedError(DomainError):
    """Nothing of the file was stored: its first bytes show it cannot be a charge list."""

    code = "invalid"
    http_status = status.HTTP_400_BAD_REQUEST
    default_detail = "The file cannot be imported."


class BatchFileTooLargeError(DomainError):
    code = "file_too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."


ProgressCallback = Callable[[int, int], None]  # (rows read, bytes read)


def batch_max_bytes() -> int:
    return settings.LEDGER_BATCH_MAX_BYTES


# --- Upload ----------------------------------------------------------------------------------


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
    size = _size_of(file)
    if size > batch_max_bytes():
        raise BatchFileTooLargeError(f"The file is {size} bytes; the limit is {batch_max_bytes()} bytes.")
    started = time.monotonic()
    # The content hash is the request's fingerprint: a retried upload of the same bytes under the
    # same key is recognised without storing or parsing it again.
    fingerprint = _sha256(file)
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


def batch_imports_stalled(*, older_than_seconds: float) -> list[int]:
    """Batches still `validating` whose import showed no sign of life for that long (its worker
    was killed, or its task was never published): marked as just seen, so that each is handed
    out once per period, and returned for the caller to start again."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ChargeBatchImport._meta.db_table} SET seen_at = %s WHERE seen_at < %s RETURNING batch_id",
            [now, now - timedelta(seconds=older_than_seconds)],
        )
        return sorted(row[0] for row in cursor.fetchall())


# --- Import ----------------------------------------------------------------------------------


def _copy_statement(model: type[models.Model], field_names: tuple[str, ...]) -> str:
    """`COPY table (columns) FROM STDIN` with the columns the model names for these fields, in
    this order. Refuses to leave out a field the database would need a value for, so a NOT NULL
    field added to the model fails the first import (and its tests) with a message naming it."""
    fields = [model._meta.get_field(name) for name in field_names]
    needed = [
        f.name
        for f in model._meta.get_fields()
        if f.concrete
        and not f.many_to_many
        and f not in fields
        and not f.primary_key
        and not f.null
        and f.db_default is NOT_PROVIDED
    ]
    if needed:
        raise ImproperlyConfigured(f"the import's COPY into {model.__name__} sets no value for {needed}")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    return f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN WITH (FORMAT csv)"


# Each charge row is its values from the file, then the batch's constants, in these fields' order.
_CHARGE_ROW_FIELDS = ("batch_line", "phone_number", "amount", "reference")
_CHARGE_BATCH_FIELDS = ("seller", "batch", "status", "request_fingerprint", "created_at")
_REJECTED_ROW_FIELDS = ("batch", "line", "phone_number", "amount", "reference", "error")


@cache
def _copy_statements() -> tuple[str, str]:
    return (
        _copy_statement(Charge, _CHARGE_ROW_FIELDS + _CHARGE_BATCH_FIELDS),
        _copy_statement(ChargeBatchRejectedRow, _REJECTED_ROW_FIELDS),
    )


def batch_import_run(*, batch_id: int, on_progress: ProgressCallback | None = None) -> ChargeBatch | None:
    """Validate the stored file of a `validating` batch and queue its valid rows, or reject it.

    Idempotent: a batch no longer `validating` is returned as it is, and a batch another run is
    importing right now is skipped (None). Everything the run writes but its progress commits at
    once, at the end, or not at all."""
    progress = _ProgressWriter(batch_id, on_progress)
    started = time.monotonic()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Two runs of one batch (a redelivered task, the sweeper's restart): one does it.
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended('ledger.import_batch', %s))", [batch_id]
                )
                if not cursor.fetchone()[0]:
                    return None
            batch = ChargeBatch.objects.get(pk=batch_id)
            if batch.status != ChargeBatch.Status.VALIDATING:
                return batch
            progress.update(0, 0)
            file = batch_file_open(batch_id=batch.pk, size=batch.file_size)
            reader = ChargeListReader(file)
            try:
                with transaction.atomic():  # a file refused half way keeps none of its rows
                    counts = _load_rows(batch, reader, progress)
            except FileRefusedError as exc:
                _reject(batch, [RowError(reader.line, "file", exc.message)], columns=reader.columns)
            else:
                _finish(batch, reader.columns, *counts)
            batch_file_delete(batch_id=batch.pk)
            ChargeBatchImport.objects.filter(batch_id=batch.pk).delete()
            loaded = time.monotonic()
    finally:
        progress.close()
    logger.info(
        "charge batch %s imported: %s rows (%s invalid) in %.2fs, commit %.2fs: %s",
        batch.pk,
        batch.total_rows,
        batch.invalid_rows,
        loaded - started,
        time.monotonic() - loaded,
        batch.status,
        extra={
            "event": "batch.imported",
            "batch_id": batch.pk,
            "seller_id": batch.seller_id,
            "rows": batch.total_rows,
            "status": batch.status,
        },
    )
    return batch


def _load_rows(batch: ChargeBatch, reader: ChargeListReader, progress: _ProgressWriter):
    constants = (batch.seller_id, batch.pk, Charge.Status.QUEUED, "", timezone.now().isoformat())
    charges, rejected = io.StringIO(), io.StringIO()
    charge_out = csv.writer(charges, quoting=csv.QUOTE_NONNUMERIC)
    rejected_out = csv.writer(rejected, quoting=csv.QUOTE_NONNUMERIC)
    copy_charges, copy_rejected = _copy_statements()
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
                charge_out.writerow((row.line, row.phone_number, row.amount, row.reference, *constants))
            if (valid + invalid) % CHUNK_ROWS == 0:
                _flush(cursor, charges, copy_charges)
                _flush(cursor, rejected, copy_rejected)
                progress.update(valid + invalid, reader.bytes_read())
        _flush(cursor, charges, copy_charges)
        _flush(cursor, rejected, copy_rejected)
    progress.update(valid + invalid, reader.bytes_read())
    if valid + invalid == 0:
        raise FileRefusedError(NO_DATA_ROWS)
    return valid, invalid, errors


def _finish(batch: ChargeBatch, columns: list[str], valid: int, invalid: int, errors: list[RowError]) -> None:
    batch.columns = columns
    batch.total_rows = batch.rows_read = valid + invalid
    batch.valid_rows, batch.invalid_rows = valid, invalid
    batch.errors = [error.as_dict() for error in errors]
    if valid == 0:
        # Final: nothing to settle. The rejected rows stay, so the results file answers for each.
        batch.status, batch.completed_at = ChargeBatch.Status.REJECTED, timezone.now()
    else:
        batch.status = ChargeBatch.Status.QUEUED
        events.intents_recorded(seller_id=batch.seller_id)
    batch.save(
        update_fields=[
            "status",
            "columns",
            "total_rows",
            "rows_read",
            "valid_rows",
            "invalid_rows",
            "errors",
            "completed_at",
        ]
    )
    if batch.status == ChargeBatch.Status.REJECTED:
        _announce_rejected(batch)


def _reject(batch: ChargeBatch, errors: list[RowError], *, columns: list[str]) -> None:
    """The file is unusable as a whole (found past its first bytes): nothing of it is kept."""
    batch.status, batch.completed_at = ChargeBatch.Status.REJECTED, timezone.now()
    batch.columns = columns
    batch.total_rows = batch.valid_rows = batch.invalid_rows = 0
    batch.errors = [error.as_dict() for error in errors]
    batch.save(
        update_fields=["status", "columns", "total_rows", "valid_rows", "invalid_rows", "errors", "completed_at"]
    )
    _announce_rejected(batch)


def _announce_rejected(batch: ChargeBatch) -> None:
    # `batch.completed` with its final status, in the transaction that rejects it.
    events.batch_completed(seller_id=batch.seller_id, batch_id=batch.pk, status=batch.status, succeeded=0, failed=0)


def batch_rejection_reason(batch: ChargeBatch) -> str:
    """One sentence for a `rejected` batch: why nothing of it was queued."""
    first = batch.errors[0] if batch.errors else None
    if first is None or first["field"] == "file":
        return first["message"] if first else "The file cannot be imported."
    return (
        f"None of the {batch.invalid_rows} rows is valid; nothing was queued. First error: line {first['line']}, "
        f"{first['field']}: {first['message']}"
    )


class _ProgressWriter:
    """Rows read and the import's sign of life (`ChargeBatchImport`), written over a connection of
    its own in autocommit, so a GET sees them while the import's transaction is still open. The
    import's own transaction deletes that row only at its end, after the last of these."""

    EVERY_SECONDS = 0.5

    def __init__(self, batch_id: int, callback: ProgressCallback | None):
        self._batch_id, self._callback = batch_id, callback
        self._connection = None
        self._last = 0.0

    def update(self, rows: int, bytes_read: int) -> None:
        if self._callback:
            self._callback(rows, bytes_read)
        now = time.monotonic()
        if rows and now - self._last < self.EVERY_SECONDS:
            return
        self._last = now
        if self._connection is None:
            self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
        with self._connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {ChargeBatchImport._meta.db_table} SET rows_read = %s, seen_at = %s WHERE batch_id = %s",
                [rows, timezone.now(), self._batch_id],
            )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


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


# --- Results ---------------------------------------------------------------------------------


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
