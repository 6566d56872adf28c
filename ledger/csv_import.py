"""Reading a charge list: CSV bytes in, validated rows out, one at a time.

The file is never held whole: bytes are decoded incrementally (UTF-8, a BOM tolerated), each
physical line is bounded, and rows are yielded as they are read, so memory stays flat from ten
rows to millions. A row is validated with the rules of a single charge (`ledger.fields`)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

import phonenumbers
from django.conf import settings
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberType

from ledger.fields import AmountField, PhoneNumberField, normalize_phone

REQUIRED_COLUMNS = ("phone_number", "amount")
OPTIONAL_COLUMNS = ("reference",)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
REFERENCE_MAX_LENGTH = 255  # Charge.reference
# A real row is well under 1 KB; the bound keeps one newline-free blob from filling memory.
MAX_LINE_CHARS = 64 * 1024
# Longer digit strings are above any configurable maximum; this also keeps int() cheap.
_MAX_AMOUNT_DIGITS = 30

_AMOUNT_MESSAGES = AmountField.default_error_messages
_PHONE_MESSAGE = PhoneNumberField.default_error_messages["invalid_phone"]
_BLANK = "This field may not be blank."


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
    errors: list[RowError] | None = None


class ChargeListReader:
    """Iterate over the data rows of a charge list; `columns` is known after the first row.

    Raises FileRefusedError for what makes the whole file unusable (no header, unknown or
    missing columns, undecodable bytes, binary content, a malformed record)."""

    def __init__(self, binary: BinaryIO):
        self._binary = binary
        self.columns: list[str] = []
        self._line = 0  # physical lines consumed so far (1-based numbering for messages)

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
                "and optionally reference."
            )


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
    expected = "phone_number, amount and optionally reference"
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
        errors.append(RowError(line, "phone_number", _BLANK))
    else:
        row.phone_number = phone_e164(phone)
        if row.phone_number is None:
            errors.append(RowError(line, "phone_number", _PHONE_MESSAGE))

    amount_error = _amount_error(raw.get("amount", "").strip())
    if amount_error:
        errors.append(RowError(line, "amount", amount_error))
    else:
        row.amount = int(raw["amount"].strip())

    reference = raw.get("reference", "").strip()
    if len(reference) > REFERENCE_MAX_LENGTH:
        errors.append(
            RowError(line, "reference", f"Ensure this field has no more than {REFERENCE_MAX_LENGTH} characters.")
        )
    row.reference = reference

    row.errors = errors or None
    return row


def _amount_error(text: str) -> str | None:
    """The single-charge amount rules on a CSV cell: an integer (ASCII, Persian or Arabic digits),
    above zero, at most LEDGER_MAX_AMOUNT. Decimals, exponents and separators are refused."""
    if not text:
        return _BLANK
    if text[0] == "-" and text[1:].isdecimal():
        return _AMOUNT_MESSAGES["min_value"]
    if not text.isdecimal():
        return _AMOUNT_MESSAGES["invalid"]
    maximum = settings.LEDGER_MAX_AMOUNT
    if len(text) > _MAX_AMOUNT_DIGITS or int(text) > maximum:
        return _AMOUNT_MESSAGES["max_value"].format(max_value=maximum)
    if int(text) <= 0:
        return _AMOUNT_MESSAGES["min_value"]
    return None


# --- Phone numbers at file speed ---------------------------------------------------------------
# `normalize_phone` is the rule. Its general parser is most of a large import's parsing time;
# the two forms lists are written in (+<country code><number> and
# <national prefix><number> of the default region) are recognised here directly and handed to the
# same library's verdict (`number_type`). Anything else, and anything this shortcut does not
# accept, goes through `normalize_phone`, so the shortcut can only ever agree with it
# (tests/batches/test_csv_import.py compares both on thousands of generated inputs).

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
_CLEAN = str.maketrans(
    {
        **{chr(0x06F0 + d): str(d) for d in range(10)},
        **{chr(0x0660 + d): str(d) for d in range(10)},
        " ": None,
        "-": None,
        "(": None,
        ")": None,
        ".": None,
    }
)


@lru_cache(maxsize=8)
def _shortcut(region: str):
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None
    code = str(metadata.country_code)
    prefixes = []
    # The parser reads the shortest known country code after "+": ours must be the first match.
    if all(int(code[:i]) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE for i in range(1, len(code))):
        prefixes.append("+" + code)
    national = metadata.national_prefix
    if (
        national
        and metadata.national_prefix_for_parsing == national
        and metadata.national_prefix_transform_rule is None
    ):
        prefixes.append(national)
    if not prefixes:
        return None
    alternatives = "|".join(re.escape(p) for p in prefixes)
    pattern = re.compile(f"(?:{alternatives})([1-9][0-9]{{5,14}})")
    strip = re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None
    return pattern, strip, metadata.country_code


def phone_e164(raw: str) -> str | None:
    """`normalize_phone(raw)`, faster for the common forms."""
    shortcut = _shortcut(settings.PHONE_DEFAULT_REGION)
    if shortcut is not None and len(raw) <= 64:
        pattern, strip, code = shortcut
        match = pattern.fullmatch(raw.strip().translate(_CLEAN))
        if match is not None and not (strip and strip.match(match[1])):
            number = PhoneNumber(country_code=code, national_number=int(match[1]))
            if phonenumbers.number_type(number) in _MOBILE_TYPES:
                return f"+{code}{match[1]}"
    return normalize_phone(raw)
