"""The import worker killed mid-import: the import starts again and every valid row is queued,
and settled, exactly once."""

import signal
import time

import pytest
from django.db import close_old_connections
from django.db.models import Count

from ledger.models import Account, Charge, ChargeBatch, ChargeBatchFileChunk, ChargeBatchImport
from tests.batches.helpers import csv_bytes, phone, upload, wait_batch_status
from tests.factories import client_for, make_seller
from tests.support import assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]

ROWS = 120_000
INVALID_EVERY = 1000


def test_import_worker_killed_mid_import_restarts_and_queues_every_valid_row_once(workers):
    seller = make_seller()  # no credit: every row fails at its reservation, none reaches the provider
    lines = [f"{phone(i)},10,r{i}" if i % INVALID_EVERY else f"bad-{i},10,r{i}" for i in range(ROWS)]
    valid = sum(1 for i in range(ROWS) if i % INVALID_EVERY)
    client = client_for(seller.user)
    response = upload(client, csv_bytes("phone_number,amount,reference", *lines))
    assert (response.status_code, response.json()["status"]) == (202, "validating")
    batch_id = response.json()["id"]

    # Progress is visible while it validates (rows read so far), then the worker dies.
    deadline = time.monotonic() + 60
    while True:
        body = client.get(f"/api/v1/charge-batches/{batch_id}/").json()
        assert body["status"] == "validating", "the import finished before it could be killed: use more rows"
        if body["rows_read"] > 0:
            break
        assert time.monotonic() < deadline, "the import worker never reported progress"
        time.sleep(0.05)
    workers.imports.kill(signal.SIGKILL)
    close_old_connections()
    killed_at = ChargeBatch.objects.select_related("running_import").get(pk=batch_id)
    assert killed_at.status == "validating" and 0 < killed_at.rows_read_so_far < ROWS
    assert not Charge.objects.filter(batch_id=batch_id).exists()  # the killed run's rows were never committed
    assert ChargeBatchFileChunk.objects.filter(batch_id=batch_id).exists()  # the file is still there to re-read

    # The message waits for the broker's visibility timeout; the resume sweeper (beat) does not.
    workers.ensure_running()
    batch = wait_batch_status(batch_id, "queued", "completed", timeout=120)
    assert (batch.total_rows, batch.valid_rows, batch.invalid_rows) == (ROWS, valid, ROWS - valid)
    wait_settled(seller.pk, timeout=180)
    batch = wait_batch_status(batch_id, "completed", timeout=30)
    assert (batch.succeeded, batch.failed, batch.succeeded_amount) == (0, valid, 0)

    charges = Charge.objects.filter(batch_id=batch_id)
    assert charges.count() == valid
    assert not charges.values("batch_line").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert set(charges.values_list("batch_line", flat=True)) == {i + 2 for i in range(ROWS) if i % INVALID_EVERY}
    assert not charges.exclude(failure_code="insufficient_funds").exists()
    assert Account.objects.get(seller=seller).balance == 0
    assert not ChargeBatchFileChunk.objects.filter(batch_id=batch_id).exists()
    assert not ChargeBatchImport.objects.filter(batch_id=batch_id).exists()
    assert_ledger_audit()


def test_a_file_without_a_valid_row_ends_rejected_through_the_worker(workers):
    seller = make_seller()
    client = client_for(seller.user)
    response = upload(client, csv_bytes("phone_number,amount", f"{phone(1)},0", "x,5"))
    assert (response.status_code, response.json()["status"]) == (202, "validating")
    batch = wait_batch_status(response.json()["id"], "rejected", timeout=60)
    assert [(e["line"], e["field"]) for e in batch.errors] == [(2, "amount"), (3, "phone_number")]
    body = client.get(f"/api/v1/charge-batches/{batch.pk}/").json()
    assert (body["status"], body["invalid_rows"], body["queued"]) == ("rejected", 2, 0)
    assert not Charge.objects.filter(seller=seller).exists()
    assert_ledger_audit()
