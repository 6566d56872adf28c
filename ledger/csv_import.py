"""Reading a charge list: CSV bytes in, validated rows out, one at a time.

The file is never held whole: bytes are decoded incrementally (UTF-8, a BOM tolerated), each
physical line is bounded, and rows are yielded as they are read, so memory stays flat from ten
rows to millions. A row is validated with the rules of a single charge (`core.charge_rules`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from core import charge_rules
from core.charge_rules import normalize_phone

REQUIRED_COLUMNS = ("phone_number", "amount")
# `product` and `operator` name what a row sells (a product id, and the number's operator when it
# is not the one its prefix says); with a product, a fixed one's `amount` may be left blank.
OPTIONAL_COLUMNS = ("reference", "product", "operator")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# A real row is well under 1 KB; the bound keeps one newline-free blob from filling memory.
MAX_LINE_CHARS = 64 * 1024
# What the upload itself checks (`check_head`): enough for the header, the encoding and a few
# hundred rows, never the whole file (that is the import worker's).
HEAD_BYTES = 256 * 1024
HEAD_ROWS = 500
NO_DATA_ROWS = "The file has a header but no data rows."


class FileRefusedError(Exception):
    """The file as a whole cannot be imported: nothing of it may be queued."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass(slots=True)
class Row:
    """One data row. `raw` holds the values as given; the others are set only when valid."""

    line: int
    raw: dict[str, str]
    phone_number: str | None = None
    amount: int | None = None
    reference: str = ""
    product: int | None = None
    operator: int | None = None
    errors: list[RowError] | None = None


class ChargeListReader:
    """Iterate over the data rows of a charge list; `columns` is known after the first row.

    Raises FileRefusedError for what makes the whole file unusable (no header, unknown or
    missing columns, undecodable bytes, binary content, a malformed record)."""

    def __init__(self, binary: BinaryIO):
        self._binary = binary
        self.columns: list[str] = []
        self._line = 0  # physical lines consumed so far (1-based numbering for messages)

    @property
    def line(self) -> int:
        """The physical line read last (the header being line 1)."""
        return self._line

    def bytes_read(self) -> int:
        try:
            return self._binary.tell()
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[Row]:
        _sniff(self._binary)
        # newline="" hands CR/LF untouched to the csv module, which needs them for quoted fields.
        text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", errors="strict", newline="")
        try:
            records = csv.reader(self._lines(text))
            yield from self._rows(records)
        except UnicodeDecodeError as exc:
            raise FileRefusedError(
                f"The file is not UTF-8 text (undecodable bytes near line {self._line + 1}). Save it as 'CSV UTF-8'."
            ) from exc
        except csv.Error as exc:
            raise FileRefusedError(f"Line {self._line}: malformed CSV ({exc}).") from exc
        finally:
            # The caller owns the binary file; do not let the wrapper close it.
            text.detach()

    def _lines(self, text: io.TextIOWrapper) -> Iterator[str]:
        while True:
            line = text.readline(MAX_LINE_CHARS)
            if not line:
                return
            self._line += 1
            if "\x00" in line:
                raise FileRefusedError("This is a binary file, not a CSV text file.")
            if len(line) == MAX_LINE_CHARS and line[-1] not in "\r\n":
                raise FileRefusedError(f"Line {self._line} is longer than {MAX_LINE_CHARS} characters.")
            yield line

    def _rows(self, records) -> Iterator[Row]:
        width = 0
        end_of_previous = 0
        for record in records:
            start = end_of_previous + 1
            end_of_previous = records.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank lines (and rows of empty cells, as spreadsheets write them)
            if not self.columns:
                self.columns = _header(record)
                width = len(self.columns)
                continue
            if len(record) > width and any(cell.strip() for cell in record[width:]):
                raw = dict(zip(self.columns, record, strict=False))
                message = f"Expected {width} columns, found {len(record)}."
                yield Row(line=start, raw=raw, errors=[RowError(start, "row", message)])
                continue
            yield _validated(start, dict(zip(self.columns, record, strict=False)))
        if not self.columns:
            raise FileRefusedError(
                "The file is empty: expected a header row naming the columns phone_number, amount "
                "and optionally reference, product and operator."
            )


def check_head(binary: BinaryIO, *, size: int) -> None:
    """Refuse, from its first bytes alone, a file that cannot be a charge list: not text, not
    UTF-8, no usable header, not CSV, or (when the head is the whole file) no data rows. Raises
    FileRefusedError; leaves the file at its start. Row errors are not looked at here."""
    head = binary.read(HEAD_BYTES)
    binary.seek(0)
    whole = len(head) >= size
    if not whole and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]  # whole lines only (a cut UTF-8 character would look undecodable)
    reader = ChargeListReader(io.BytesIO(head))
    rows = 0
    for _ in reader:
        rows += 1
        if rows >= HEAD_ROWS:
            return
    if whole and rows == 0:
        raise FileRefusedError(NO_DATA_ROWS)


def _sniff(binary: BinaryIO) -> None:
    """Name the two common wrong uploads before decoding: a spreadsheet saved as UTF-16 text, and
    a file that is not text at all."""
    head = binary.read(8192)
    binary.seek(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRefusedError("The file is UTF-16 text, not UTF-8. Save it as 'CSV UTF-8'.")
    if b"\x00" in head:
        raise FileRefusedError("This is a binary file, not a CSV text file.")


def _header(record: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in record]
    while names and not names[-1]:
        names.pop()  # spreadsheets pad rows with empty cells; data rows may carry them too
    expected = "phone_number, amount and optionally reference, product and operator"
    if any(normalize_phone(cell) or cell.strip().isdecimal() for cell in record):
        raise FileRefusedError(f"The first row must be a header naming the columns {expected}; it holds data.")
    if len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
        raise FileRefusedError(f"Columns must be separated by commas; the header reads {record[0]!r}.")
    if "" in names:
        raise FileRefusedError(f"Column {names.index('') + 1} of the header has no name.")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise FileRefusedError(f"Duplicate columns in the header: {', '.join(duplicated)}.")
    unknown = [name for name in names if name not in KNOWN_COLUMNS]
    if unknown:
        raise FileRefusedError(
            f"Unknown columns in the header: {', '.join(unknown)}. Allowed: {', '.join(KNOWN_COLUMNS)}."
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise FileRefusedError(f"Missing required columns in the header: {', '.join(missing)}.")
    return names


def _validated(line: int, raw: dict[str, str]) -> Row:
    row = Row(line=line, raw=raw)
    errors: list[RowError] = []

    phone = raw.get("phone_number", "").strip()
    if not phone:
        errors.append(RowError(line, "phone_number", charge_rules.BLANK))
    else:
        row.phone_number = normalize_phone(phone)
        if row.phone_number is None:
            errors.append(RowError(line, "phone_number", charge_rules.PHONE_INVALID))

    for name in ("product", "operator"):
        text = raw.get(name, "").strip()
        if text:
            value = charge_rules.id_from_text(text)
            if value is None:
                errors.append(RowError(line, name, charge_rules.ID_INVALID))
            setattr(row, name, value)

    amount_text = raw.get("amount", "")
    if amount_text.strip() or row.product is None:  # a product alone may sell its one denomination
        row.amount, amount_error = charge_rules.amount_from_text(amount_text)
        if amount_error:
            errors.append(RowError(line, "amount", amount_error))

    row.reference = raw.get("reference", "").strip()
    reference_error = charge_rules.reference_problem(row.reference)
    if reference_error:
        errors.append(RowError(line, "reference", reference_error))

    row.errors = errors or None
    return row
