"""The one CSV writer every export uses: spreadsheet formulas never run."""

import csv
import io

import pytest

from ledger.csv_export import csv_lines, neutralize


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("-5", "'-5"),
        ("@import", "'@import"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("+1", "'+1"),  # too short for a phone number
        ("+989121234567", "+989121234567"),  # E.164: a plain number to a spreadsheet
        ("a=b", "a=b"),
        ("", ""),
        (-5000, -5000),  # numbers are written by us, not text a spreadsheet would evaluate
        (None, None),
    ],
)
def test_neutralize(value, written):
    assert neutralize(value) == written


def test_csv_lines_neutralizes_every_cell_and_streams_in_blocks():
    rows = [("=1+1", i, None) for i in range(2500)]
    chunks = list(csv_lines(["@h", "n", "x"], rows, block=1000))
    assert len(chunks) == 3
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert parsed[0] == ["'@h", "n", "x"]
    assert parsed[1] == ["'=1+1", "0", ""]
    assert len(parsed) == 2501
