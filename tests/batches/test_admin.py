import pytest
from django.test import Client

from tests.batches.helpers import csv_bytes, phone, upload
from tests.factories import client_for, make_admin, make_seller

pytestmark = pytest.mark.django_db


def test_admin_shows_a_batch_read_only_with_its_progress():
    seller = make_seller()
    batch_id = upload(client_for(seller.user), csv_bytes("phone_number,amount", f"{phone(1)},100", "x,1")).json()["id"]
    client = Client()
    client.force_login(make_admin())
    page = client.get(f"/admin/ledger/chargebatch/{batch_id}/change/")
    assert page.status_code == 200
    assert "1 queued, 0 succeeded (0 charged), 0 failed" in page.content.decode()
    assert client.get("/admin/ledger/chargebatch/").status_code == 200
    assert client.get("/admin/ledger/chargebatch/add/").status_code == 403
    assert client.post(f"/admin/ledger/chargebatch/{batch_id}/delete/").status_code == 403
