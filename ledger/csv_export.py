"""Writing CSV that is safe to open in a spreadsheet, streamed in blocks of rows.

Every CSV the system writes goes through `neutralize`: a text cell a spreadsheet would read as a
formula (starting with = + - @, or a tab or carriage return) gets a leading single quote. The data
itself is never changed, only its CSV rendering."""

import csv
import io
import re
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# An E.164 phone number (what the ledger stores) starts with "+" but is a plain number to a
# spreadsheet and cannot run anything; quoting it would only break re-imports of our own files.
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def neutralize(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _E164.fullmatch(value):
        return "'" + value
    return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable], *, block: int = 1000) -> Iterator[str]:
    """The header and rows as CSV text, `block` rows per chunk, every cell neutralized."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralize(name) for name in header])
    pending = 1
    for row in rows:
        writer.writerow([neutralize(cell) for cell in row])
        pending += 1
        if pending >= block:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()


def started(chunks: Generator[str]) -> Generator[str]:
    """`chunks` with its first chunk already made, for a view's streamed answer. The queries behind
    the first chunk then run inside the view, where a lost database connection is answered like
    any other (503 with Retry-After, `core/errors.py`); left lazy, they ran after the view had
    returned, outside Django's and DRF's handling, and gunicorn answered its own HTML 500. Once
    the first chunk is sent, an error can only cut the download short."""
    first = next(chunks, None)

    def stream() -> Generator[str]:
        with closing(chunks):
            if first is not None:
                yield first
            yield from chunks

    return stream()
