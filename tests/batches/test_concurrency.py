"""Retries that race: the same upload sent twice at once creates one batch."""

import threading

import pytest
from django.db import connection

from ledger.models import Charge, ChargeBatch
from tests.batches.helpers import csv_bytes, phone, upload
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
    assert Charge.objects.count() == 3000
