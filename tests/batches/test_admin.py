import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ledger.services.batch_import import batch_import_run
from tests.batches.helpers import csv_bytes, phone, upload, writes
from tests.factories import client_for, make_admin, make_seller

pytestmark = pytest.mark.django_db


def test_admin_shows_a_batch_read_only_with_its_progress_and_writes_nothing():
    seller = make_seller()
    batch_id = upload(client_for(seller.user), csv_bytes("phone_number,amount", f"{phone(1)},100", "x,1")).json()["id"]
    client = Client()
    client.force_login(make_admin())
    assert "validating: 0 rows read" in client.get(f"/admin/ledger/chargebatch/{batch_id}/change/").content.decode()
    batch_import_run(batch_id=batch_id)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/admin/ledger/chargebatch/{batch_id}/change/")
        listing = client.get("/admin/ledger/chargebatch/")
    assert page.status_code == 200 and listing.status_code == 200
    assert "1 queued, 0 succeeded (0 charged), 0 failed" in page.content.decode()
    assert writes(queries) == []
    assert client.get("/admin/ledger/chargebatch/").status_code == 200
    assert client.get("/admin/ledger/chargebatch/add/").status_code == 403
    assert client.post(f"/admin/ledger/chargebatch/{batch_id}/delete/").status_code == 403
