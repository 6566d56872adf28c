"""A statement written as JSON and as CSV, each fed one entry at a time (docs/api.md, "Statements":
both layouts). The seller's verifier (`ledger_verify.py`) reads either."""

import csv
import io
import json

from ledger.statements.documents import Statement

CSV_COLUMNS = [
    "record",  # opening, entry, total, closing, checkpoint
    "seller",
    "seq",
    "created_at",  # opening/closing: the period's start/end; checkpoint: its entry's time
    "kind",
    "amount",
    "balance_before",
    "balance_after",  # opening/closing/checkpoint: the balance of that head
    "held",
    "hash",
    "charge",
    "deposit",
    "phone_number",
    "reference",
    "product",
    "product_name",
    "face_value",
    "face_currency",
    "price",
    "count",
    "signed_at",
    "key_id",
    "signature",
]


# One encoder for every entry: `json.dumps` with options builds a new one per call.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class JsonWriter:
    """`{header..., "opening", "entries": [...], "totals", "closing", "checkpoint"}`, one entry a line."""

    def __init__(self, statement: Statement, sink):
        self.statement, self.sink, self.lines, self.separator = statement, sink, [], " "
        head = _compact({**statement.header(), "opening": statement.opening.as_dict()})
        sink((head[:-1] + ',"entries":[\n').encode())

    def entry(self, entry: dict) -> None:
        # Handed on a thousand lines at a time: a million entries make a month.
        self.lines.append(self.separator + _compact(entry) + "\n")
        self.separator = ","
        if len(self.lines) >= 1000:
            self.flush()

    def flush(self) -> None:
        self.sink("".join(self.lines).encode())
        self.lines = []

    def close(self) -> None:
        tail = {
            "totals": self.statement.totals,
            "closing": self.statement.closing.as_dict(),
            "checkpoint": self.statement.checkpoint_dict(),
        }
        self.flush()
        self.sink(("]," + _compact(tail)[1:] + "\n").encode())


def _safe(value) -> str:
    """A text cell a spreadsheet would run as a formula gets a leading `'`, as every CSV of the API."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _blank(value) -> object:
    return "" if value is None else value


def _is_number(text: str) -> bool:
    return text.lstrip("-").isdigit()


class CsvWriter:
    def __init__(self, statement: Statement, sink):
        self.statement, self.sink = statement, sink
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        self.writer.writerow(CSV_COLUMNS)
        self._row("opening", created_at=statement.header()["period"]["start"], **self._head(statement.opening))

    @staticmethod
    def _head(head) -> dict:
        return {"seq": head.seq, "balance_after": head.balance, "held": head.held, "hash": head.hash.hex()}

    def _row(self, record: str, **cells) -> None:
        cells = {"record": record, "seller": self.statement.seller_id, **cells}
        self.writer.writerow([_safe(cells.get(column)) for column in CSV_COLUMNS])
        if self.buffer.tell() > 64 * 1024:
            self.flush()

    def flush(self) -> None:
        self.sink(self.buffer.getvalue().encode())
        self.buffer.seek(0)
        self.buffer.truncate()

    def entry(self, entry: dict) -> None:
        # The one row per entry, written straight in CSV_COLUMNS' order: a million of them make a month.
        charge = entry["charge"] or {}
        deposit = entry["deposit"] or {}
        product = charge.get("product") or {}
        face = charge.get("face_value") or {}
        self.writer.writerow(
            [
                "entry",
                self.statement.seller_id,
                entry["seq"],
                entry["created_at"],
                entry["kind"],
                entry["amount"],
                entry["balance_before"],
                entry["balance_after"],
                "",
                entry["hash"],
                _blank(charge.get("id")),
                _blank(deposit.get("id")),
                _safe(charge.get("phone_number")),
                _safe(charge.get("reference", deposit.get("reference"))),
                _blank(product.get("id")),
                _safe(product.get("name")),
                _blank(face.get("amount")),
                _safe(face.get("currency")),
                _blank(charge.get("price")),
                "",
                "",
                "",
                "",
            ]
        )
        if self.buffer.tell() > 64 * 1024:
            self.flush()

    def close(self) -> None:
        for kind, total in sorted(self.statement.totals.items()):
            self._row("total", kind=kind, amount=total["amount"], count=total["count"])
        self._row("closing", created_at=self.statement.header()["period"]["end"], **self._head(self.statement.closing))
        cp = self.statement.checkpoint_dict()
        self._row(
            "checkpoint",
            seq=cp["seq"],
            created_at=cp["entry_created_at"],
            balance_after=cp["balance"],
            hash=cp["hash"],
            signed_at=cp["signed_at"],
            key_id=cp["key_id"],
            signature=cp["signature"],
        )
        self.flush()
