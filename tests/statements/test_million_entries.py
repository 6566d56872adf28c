"""A month statement of a seller with 1,000,000 entries, built by the import worker (the real task,
from the request to `ready`), carries the month's totals and closing balance in JSON and in CSV. The
history is the benchmark's (`bench.seed.long_history`): what the settle would have written, hash
chain included, at bulk speed."""

import json
import time

import pytest
from django.utils import timezone

from bench.seed import long_history
from ledger.models import Statement
from ledger.statements.build import statement_request
from ledger.statements.models import StatementFile
from ledger.statements.monthly import last_month
from tests.factories import make_seller
from tests.support import assert_ledger_audit

ENTRIES = 1_000_000


def _tail(statement: Statement, fmt: str) -> list[str]:
    """The last lines of a stored format (its last two pieces: totals, closing and checkpoint)."""
    pieces = StatementFile.objects.filter(statement=statement, format=fmt).order_by("-index")[:2]
    return b"".join(bytes(p.data) for p in reversed(pieces)).decode().splitlines()[-8:]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_month_of_a_million_entries_is_built_by_the_worker_with_its_totals(workers):
    seller = make_seller()
    start, end = last_month(timezone.now())
    history = long_history(seller.pk, entries=ENTRIES, start=start, end=end)
    charges = ENTRIES - 1
    closing = history["fund"] - charges * history["amount"]

    statement, _ = statement_request(seller_id=seller.pk, period_start=start, period_end=end)
    deadline = time.monotonic() + 300
    while (statement := Statement.objects.get(pk=statement.pk)).status != Statement.Status.READY:
        assert time.monotonic() < deadline, f"statement still {statement.status}"
        time.sleep(0.5)

    assert (statement.entries, statement.opening_balance, statement.closing_balance) == (ENTRIES, 0, closing)
    assert (statement.opening_seq, statement.closing_seq) == (0, ENTRIES)
    assert statement.formats == ["json", "csv"]  # too long for a PDF
    document = json.loads("{" + _tail(statement, "json")[-1][2:])
    expected = {
        "deposit": {"count": 1, "amount": history["fund"]},
        "charge": {"count": charges, "amount": -charges * history["amount"]},
    }
    assert document["totals"] == history["totals"] == expected
    assert document["closing"]["balance"] == document["checkpoint"]["balance"] == closing
    totals = {
        cells[4]: {"count": int(cells[19]), "amount": int(cells[5])}
        for cells in (line.split(",") for line in _tail(statement, "csv"))
        if cells[0] == "total"
    }
    assert totals == expected
    assert_ledger_audit(seller.pk)
