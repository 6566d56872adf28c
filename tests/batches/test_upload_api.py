import pytest

from ledger.models import Charge, ChargeBatch
from tests.batches.helpers import csv_bytes, e164, phone, results_rows, upload
from tests.factories import client_for, make_seller

pytestmark = pytest.mark.django_db


def test_upload_queues_valid_rows_in_file_order_and_reports_invalid_ones(django_capture_on_commit_callbacks):
    seller = make_seller()
    content = csv_bytes(
        "phone_number,amount,reference",
        f"{phone(1)},5000,first",
        "not-a-phone,5000,bad phone",
        f"{phone(2)},-10,negative",
        f"{phone(3)},7000,",
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(client_for(seller.user), content)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == f"/api/v1/charge-batches/{body['id']}/"
    assert body["status"] == "queued"
    assert (body["total_rows"], body["valid_rows"], body["invalid_rows"]) == (4, 2, 2)
    assert (body["queued"], body["succeeded"], body["failed"], body["succeeded_amount"]) == (2, 0, 0, 0)
    assert body["errors"] == [
        {"line": 3, "field": "phone_number", "message": "Enter a valid mobile phone number."},
        {"line": 4, "field": "amount", "message": "Must be greater than zero."},
    ]
    charges = list(Charge.objects.filter(batch_id=body["id"]).order_by("id").values_list(
        "phone_number", "amount", "reference", "batch_line", "status"))
    assert charges == [(e164(1), 5000, "first", 2, "queued"), (e164(3), 7000, "", 5, "queued")]
    assert len(callbacks) == 1  # one wake-up for the whole batch
    rows = results_rows(client_for(seller.user), body["id"])
    assert rows[0] == ["phone_number", "amount", "reference", "charge_id", "status", "failure_code",
                       "balance_after", "line", "error"]
    assert [r[4] for r in rows[1:]] == ["queued", "invalid", "invalid", "queued"]
    assert rows[2][:3] == ["not-a-phone", "5000", "bad phone"]
    assert rows[3][-1] == "amount: Must be greater than zero."
