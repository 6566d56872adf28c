"""Charge list imports: the second step, on the import worker (`ledger.import_batch`, on its own
queue) or in the CLI's process. `batch_import_run` reads the stored file of a `validating` batch,
validates every row and, in one transaction, COPYs the valid rows into queued charges (in file
order; each sells what `catalog.sales` resolves for it, from one read of the catalog) and the
invalid ones (the catalog's refusals too) into rejected rows, and flips the batch to `queued`
(or `rejected` when nothing of it can be queued); the seller's worker is woken after that commit. A run killed
half way leaves nothing, and a run finding the batch no longer `validating` does nothing:
re-running after a crash queues every valid row exactly once.

Progress while validating (`ChargeBatchImport`) is written over a second, autocommitted
connection; outcomes afterwards are counted by the settle (`ledger.posting`)."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models import NOT_PROVIDED
from django.utils import timezone

from catalog.sales import CatalogSnapshot, Sale
from core.errors import DomainError
from ledger import events
from ledger.batch_files import batch_file_delete, batch_file_open
from ledger.csv_import import NO_DATA_ROWS, ChargeListReader, FileRefusedError, Row, RowError
from ledger.models import Charge, ChargeBatch, ChargeBatchImport, ChargeBatchRejectedRow

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
MAX_REPORTED_ERRORS = 100

ProgressCallback = Callable[[int, int], None]  # (rows read, bytes read)


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
_CHARGE_ROW_FIELDS = (
    "batch_line",
    "phone_number",
    "amount",
    "reference",
    "operator",
    "product",
    "product_version",
    "cost",
    "destination_amount",
    "destination_currency",
)
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
    catalog = CatalogSnapshot(seller_id=batch.seller_id)

    with connection.cursor() as cursor:
        for row in reader:
            sale = None if row.errors else _sale(catalog, row)
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
                        row.line,
                        row.phone_number,
                        sale.price,
                        row.reference,
                        sale.operator_id,
                        sale.product_id,
                        sale.product_version_id,
                        sale.cost,
                        sale.destination_amount,
                        sale.destination_currency,
                        *constants,
                    )
                )
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


def _sale(catalog: CatalogSnapshot, row: Row) -> Sale | None:
    """What the row sells, or None with the reason on the row: an invalid row, nothing held."""
    try:
        return catalog.sale(
            msisdn=row.phone_number, amount=row.amount, product_id=row.product, operator_id=row.operator
        )
    except DomainError as exc:
        row.errors = [RowError(row.line, _SALE_ERROR_FIELDS.get(exc.code, "product"), exc.detail)]
        return None


# The column a catalog refusal is about (catalog/errors.py codes).
_SALE_ERROR_FIELDS = {
    "no_operator": "phone_number",
    "unknown_operator": "operator",
    "operator_mismatch": "operator",
    "amount_not_offered": "amount",
    "no_product": "amount",
    "product_required": "amount",
}


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
