"""Batches imported by the real import worker and settled by the real shard workers: the async
flow (upload -> 202 validating -> queued -> settled -> completed by the settle), order, overdraft,
results, the CLI."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.fields import DateTimeField

from ledger.models import Account, Charge, ChargeBatch
from tests.batches.helpers import csv_bytes, e164, phone, results_rows, upload, wait_batch_status
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def funded_seller(amount: int):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    wait_settled(seller.pk, timeout=30)
    return seller


def test_batch_that_partly_overdraws_is_imported_by_the_worker_and_settles_in_file_order(workers):
    seller = funded_seller(10_000)
    lines = [
        "phone_number,amount,reference",
        f"{phone(1)},3000,a",  # 7000 left
        f"{phone(2)},4000,b",  # 3000 left
        f"{phone(3)},5000,c",  # insufficient
        "0912,100,d",  # invalid phone
        f"{phone(4)},2000,e",  # 1000 left
        "",
        f"{phone(5)},1500,f",  # insufficient
        f"{phone(6)},1000,g",  # 0 left
        f"{phone(7)},1,h",  # insufficient
    ]
    client = client_for(seller.user)
    response = upload(client, csv_bytes(*lines))
    assert response.status_code == 202
    assert response.json()["status"] == "validating"
    batch_id = response.json()["id"]
    wait_batch_status(batch_id, "completed")
    wait_settled(seller.pk, timeout=60)

    outcome = list(
        Charge.objects.filter(batch_id=batch_id)
        .order_by("id")
        .values_list("batch_line", "amount", "status", "failure_code", "balance_after")
    )
    assert outcome == [
        (2, 3000, "succeeded", None, 7000),
        (3, 4000, "succeeded", None, 3000),
        (4, 5000, "failed", "insufficient_funds", None),
        (6, 2000, "succeeded", None, 1000),
        (8, 1500, "failed", "insufficient_funds", None),
        (9, 1000, "succeeded", None, 0),
        (10, 1, "failed", "insufficient_funds", None),
    ]
    assert Account.objects.get(seller=seller).balance == 0

    batch = client.get(f"/api/v1/charge-batches/{batch_id}/").json()
    assert batch["status"] == "completed"
    # Recorded by the settle of the last charge, in its transaction: the same moment.
    last_settled = Charge.objects.filter(batch_id=batch_id).order_by("-settled_at")[0].settled_at
    assert batch["completed_at"] == DateTimeField().to_representation(last_settled)
    assert (batch["total_rows"], batch["valid_rows"], batch["invalid_rows"]) == (8, 7, 1)
    assert (batch["queued"], batch["succeeded"], batch["failed"], batch["succeeded_amount"]) == (0, 4, 3, 10_000)
    # Read again: the frozen counts give the same answer.
    assert client.get(f"/api/v1/charge-batches/{batch_id}/").json() == batch

    rows = results_rows(client, batch_id)
    data_lines = [line for line in lines[1:] if line]
    assert len(rows) == 1 + len(data_lines)
    charge_ids = list(Charge.objects.filter(batch_id=batch_id).order_by("id").values_list("id", flat=True))
    expected = [
        ("3000", "a", "succeeded", "", "7000"),
        ("4000", "b", "succeeded", "", "3000"),
        ("5000", "c", "failed", "insufficient_funds", ""),
        ("100", "d", "invalid", "", ""),
        ("2000", "e", "succeeded", "", "1000"),
        ("1500", "f", "failed", "insufficient_funds", ""),
        ("1000", "g", "succeeded", "", "0"),
        ("1", "h", "failed", "insufficient_funds", ""),
    ]
    assert [(r[1], r[2], r[4], r[5], r[6]) for r in rows[1:]] == expected
    # Each results row names its input line, and the phone read from it.
    assert [r[7] for r in rows[1:]] == ["2", "3", "4", "5", "6", "8", "9", "10"]
    assert [r[0] for r in rows[1:]] == [e164(1), e164(2), e164(3), "0912", e164(4), e164(5), e164(6), e164(7)]
    assert [int(r[3]) for r in rows[1:] if r[3]] == charge_ids
    assert_ledger_audit()


def test_import_command_queues_waits_for_settlement_and_writes_results(workers, tmp_path):
    seller = funded_seller(10_000_000)
    source = tmp_path / "list.csv"
    rows = [f"{phone(i)},{100 + i}" for i in range(2500)] + ["bad,1"]
    source.write_bytes(csv_bytes("phone_number,amount", *rows, newline="\r\n", bom=True))
    results = tmp_path / "results.csv"
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_charges",
        str(source),
        "--seller",
        seller.user.username,
        "--results",
        str(results),
        "--timeout",
        "60",
        stdout=out,
        stderr=err,
    )
    assert "2501 rows, 2500 valid, 1 invalid" in out.getvalue()
    spent = sum(100 + i for i in range(2500))
    assert f"completed: 2500 succeeded ({spent} charged), 0 failed" in out.getvalue()
    assert "settled" in err.getvalue()  # the progress bar
    with results.open(newline="") as fh:
        written = list(csv.reader(fh))
    assert len(written) == 2502
    assert written[-1][:4] == ["bad", "1", "", "invalid"]
    assert Account.objects.get(seller=seller).balance == 10_000_000 - spent
    # The same key and file again imports nothing twice.
    call_command(
        "import_charges",
        str(source),
        "--seller",
        str(seller.pk),
        "--idempotency-key",
        "k1",
        "--no-wait",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    again = io.StringIO()
    call_command(
        "import_charges",
        str(source),
        "--seller",
        str(seller.pk),
        "--idempotency-key",
        "k1",
        "--no-wait",
        stdout=again,
        stderr=io.StringIO(),
    )
    assert "already imported as" in again.getvalue()
    wait_settled(seller.pk, timeout=60)
    assert Charge.objects.filter(seller=seller).count() == 5000
    assert_ledger_audit()


def test_import_command_exits_non_zero_when_the_file_is_refused(tmp_path):
    seller = make_seller()
    source = tmp_path / "list.csv"
    source.write_bytes(csv_bytes("phone,amount", f"{phone(1)},100"))
    with pytest.raises(CommandError, match="Unknown columns in the header: phone") as exc:
        call_command(
            "import_charges", str(source), "--seller", str(seller.pk), stdout=io.StringIO(), stderr=io.StringIO()
        )
    assert exc.value.returncode == 1
    with pytest.raises(CommandError, match="no seller"):
        call_command("import_charges", str(source), "--seller", "nobody-by-that-name")
    # A file none of whose rows is valid: refused, its errors printed, the batch rejected.
    source.write_bytes(csv_bytes("phone_number,amount", f"{phone(1)},-5", "123,5000"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="None of the 2 rows is valid; nothing was queued") as exc:
        call_command("import_charges", str(source), "--seller", str(seller.pk), stdout=io.StringIO(), stderr=err)
    assert exc.value.returncode == 1
    assert "line 3 phone_number: Enter a valid mobile phone number." in err.getvalue()
    assert ChargeBatch.objects.get().status == "rejected"
    assert not Charge.objects.exists()
