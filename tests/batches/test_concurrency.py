"""Retries that race: the same upload sent at once creates one batch, imported once."""

import threading

import pytest
from django.db import connection

from ledger.models import Charge, ChargeBatch, ChargeBatchFileChunk
from ledger.services.batch_import import batch_import_run
from tests.batches.helpers import csv_bytes, phone, upload, wait_batch_status
from tests.factories import client_for, make_seller


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_with_one_key_create_one_batch():
    seller = make_seller()
    content = csv_bytes("phone_number,amount", *[f"{phone(i)},100" for i in range(3000)])
    statuses, ids = [], []
    start = threading.Barrier(4)

    def send():
        try:
            start.wait()
            response = upload(client_for(seller.user), content, key="retry-me")
            statuses.append(response.status_code)
            ids.append(response.json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 202]
    assert len(set(ids)) == 1
    assert ChargeBatch.objects.count() == 1
    assert ChargeBatchFileChunk.objects.count() == 1  # stored once
    # Two imports of it at once (a redelivered task beside the first): one imports, one skips.
    results = []
    start = threading.Barrier(2)

    def run():
        try:
            start.wait()
            results.append(batch_import_run(batch_id=ids[0]))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The import worker, when one runs in this session, may have taken it first: one run imports.
    assert all(result is None or result.status == "queued" for result in results)
    wait_batch_status(ids[0], "queued")
    assert Charge.objects.count() == 3000
    assert batch_import_run(batch_id=ids[0]).status == "queued"  # and once more: nothing added
    assert Charge.objects.count() == 3000
