"""Statements: requested (`statement_request`), built by a worker (`statement_build`) into pieces
stored in PostgreSQL (any host serves them), announced by the ledger's `statement_ready` event.

A build is idempotent: it replaces whatever pieces an interrupted build of the same statement left,
in one transaction with the statement's move to `ready`; a ready statement is never built again.
Its period must be over, and before reading, the build waits for the seller's settle in progress
(if any) to commit: every entry of the period is then in the database (a seller's batches carry
strictly increasing times, ledger/posting.py), so the statement can never change afterwards."""

from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ledger import events
from ledger.errors import InvalidStateError
from ledger.locks import account_lock, statement_lock
from ledger.statements.documents import statement_entries, statement_open
from ledger.statements.formats import CsvWriter, JsonWriter
from ledger.statements.models import Statement, StatementFile
from ledger.statements.pdf import statement_pdf

PIECE_BYTES = 1024 * 1024
FORMATS = ("json", "csv")


def statement_request(*, seller_id: int, period_start: datetime, period_end: datetime, requested_by=None):
    """The seller's statement for the period, recorded `queued` (its build is enqueued after commit
    through the `statement_requested` event); an existing one for the same period is answered as
    it is. Returns (statement, created)."""
    if period_end > timezone.now():
        raise InvalidStateError("The period is not over yet.")
    with transaction.atomic():
        statement, created = Statement.objects.get_or_create(
            seller_id=seller_id,
            period_start=period_start.astimezone(UTC),
            period_end=period_end.astimezone(UTC),
            defaults={"requested_by": requested_by},
        )
        if created:
            events.statement_requested(statement_id=statement.pk)
    return statement, created


class _Pieces:
    """Bytes of one format cut into PIECE_BYTES rows as they come."""

    def __init__(self, statement_id: int, fmt: str):
        self.statement_id, self.format, self.index, self.buffer = statement_id, fmt, 0, bytearray()

    def __call__(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= PIECE_BYTES:
            self._store(bytes(self.buffer[:PIECE_BYTES]))
            del self.buffer[:PIECE_BYTES]

    def _store(self, data: bytes) -> None:
        StatementFile.objects.create(statement_id=self.statement_id, format=self.format, index=self.index, data=data)
        self.index += 1

    def close(self) -> None:
        if self.buffer or self.index == 0:
            self._store(bytes(self.buffer))
        self.buffer = bytearray()


def _wait_for_settle(seller_id: int) -> None:
    """Take and release the seller's account lock: a settle holding it (whose entries may carry a
    time inside the period) has committed once this returns."""
    with transaction.atomic(), connection.cursor() as cursor:
        account_lock(cursor, seller_id=seller_id)


def statement_build(*, statement_id: int) -> Statement:
    statement = Statement.objects.get(pk=statement_id)
    if statement.status == Statement.Status.READY:
        return statement
    _wait_for_settle(statement.seller_id)
    with transaction.atomic():
        if statement_lock(statement_id=statement_id).status == Statement.Status.READY:
            return statement
        StatementFile.objects.filter(statement_id=statement_id).delete()
        document = statement_open(
            seller_id=statement.seller_id, period_start=statement.period_start, period_end=statement.period_end
        )
        sinks = {fmt: _Pieces(statement_id, fmt) for fmt in FORMATS}
        writers = [JsonWriter(document, sinks["json"]), CsvWriter(document, sinks["csv"])]
        entries = []
        for entry in statement_entries(document):
            for writer in writers:
                writer.entry(entry)
            if len(entries) <= settings.STATEMENT_PDF_MAX_ENTRIES:
                entries.append(entry)
        for writer in writers:
            writer.close()
        for sink in sinks.values():
            sink.close()
        formats = list(FORMATS)
        if len(entries) <= settings.STATEMENT_PDF_MAX_ENTRIES:
            _pdf(document, entries, statement_id)
            formats.append("pdf")
        Statement.objects.filter(pk=statement_id).update(
            status=Statement.Status.READY,
            ready_at=timezone.now(),
            entries=sum(t["count"] for t in document.totals.values()),
            opening_seq=document.opening.seq,
            opening_balance=document.opening.balance,
            closing_seq=document.closing.seq,
            closing_balance=document.closing.balance,
            checkpoint=document.checkpoint,
            formats=formats,
        )
        events.statement_ready(
            seller_id=statement.seller_id,
            statement_id=statement_id,
            period_start=statement.period_start,
            period_end=statement.period_end,
        )
    statement.refresh_from_db()
    return statement


def _pdf(document, entries: list[dict], statement_id: int) -> None:
    sink = _Pieces(statement_id, "pdf")
    sink(statement_pdf(document, entries))
    sink.close()


def statement_pieces(*, statement: Statement, fmt: str):
    """The stored bytes of one format, piece by piece (for streaming a download)."""
    ids = StatementFile.objects.filter(statement=statement, format=fmt).order_by("index").values_list("id", flat=True)
    for piece_id in ids:
        yield bytes(StatementFile.objects.values_list("data", flat=True).get(pk=piece_id))
