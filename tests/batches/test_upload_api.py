import pytest

from ledger.batch_files import CHUNK_BYTES
from ledger.csv_import import HEAD_BYTES
from ledger.models import Charge, ChargeBatch, ChargeBatchFileChunk, ChargeBatchRejectedRow
from ledger.services.batch_import import batch_import_run
from notifications.models import WebhookEndpoint
from tests.batches.helpers import csv_bytes, e164, imported, phone, results_rows, upload
from tests.factories import client_for, make_seller
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db


def test_upload_is_stored_as_validating_and_its_import_queues_valid_rows_in_file_order(
    django_capture_on_commit_callbacks,
):
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
    assert (body["status"], body["rows_read"], body["total_rows"], body["queued"]) == ("validating", 0, 0, 0)
    assert len(callbacks) == 1  # the import's start, nothing parsed in the request
    assert not Charge.objects.exists()
    assert ChargeBatchFileChunk.objects.filter(batch_id=body["id"]).count() == 1

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch_import_run(batch_id=body["id"])
    assert len(callbacks) == 1  # one wake-up for the whole batch
    body = client_for(seller.user).get(f"/api/v1/charge-batches/{body['id']}/").json()
    assert (body["status"], body["rows_read"]) == ("queued", 4)
    assert (body["total_rows"], body["valid_rows"], body["invalid_rows"]) == (4, 2, 2)
    assert (body["queued"], body["succeeded"], body["failed"], body["succeeded_amount"]) == (2, 0, 0, 0)
    assert body["errors"] == [
        {"line": 3, "field": "phone_number", "message": "Enter a valid mobile phone number."},
        {"line": 4, "field": "amount", "message": "Must be greater than zero."},
    ]
    charges = list(
        Charge.objects.filter(batch_id=body["id"])
        .order_by("id")
        .values_list("phone_number", "amount", "reference", "batch_line", "status")
    )
    assert charges == [(e164(1), 5000, "first", 2, "queued"), (e164(3), 7000, "", 5, "queued")]
    assert not ChargeBatchFileChunk.objects.exists()  # the stored file goes once imported
    rows = results_rows(client_for(seller.user), body["id"])
    assert rows[0] == [
        "phone_number",
        "amount",
        "reference",
        "charge_id",
        "status",
        "failure_code",
        "balance_after",
        "line",
        "error",
    ]
    assert [r[4] for r in rows[1:]] == ["queued", "invalid", "invalid", "queued"]
    assert rows[2][:3] == ["not-a-phone", "5000", "bad phone"]
    assert rows[3][-1] == "amount: Must be greater than zero."
    # A second run (a redelivered task) finds the batch imported and adds nothing.
    batch_import_run(batch_id=body["id"])
    assert Charge.objects.count() == 2
    assert_ledger_audit()  # queued batch charges are ordinary queued charges to the audit


def test_a_large_upload_is_stored_in_chunks_and_read_back_whole():
    seller = make_seller()
    rows = [f"{phone(i)},{i + 1},ref-{i}" for i in range(120_000)]
    content = csv_bytes("phone_number,amount,reference", *rows)
    assert len(content) > 3 * CHUNK_BYTES
    body = upload(client_for(seller.user), content).json()
    assert ChargeBatchFileChunk.objects.filter(batch_id=body["id"]).count() == -(-len(content) // CHUNK_BYTES)
    batch = batch_import_run(batch_id=body["id"])
    assert (batch.status, batch.valid_rows, batch.invalid_rows) == ("queued", 120_000, 0)
    assert Charge.objects.filter(batch_id=body["id"]).order_by("-id").values_list("batch_line", "amount")[0] == (
        120_001,
        120_000,
    )


def _nothing_stored():
    return (
        not ChargeBatch.objects.exists() and not Charge.objects.exists() and not ChargeBatchFileChunk.objects.exists()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (csv_bytes("phone_number,amount"), "no data rows"),
        (csv_bytes("phone,amount", f"{phone(1)},5000"), "Unknown columns in the header: phone."),
        (csv_bytes("amount,reference", "5000,x"), "Missing required columns in the header: phone_number."),
        (b"phone_number,amount\n09120000001,5000\n\xc3\x28,5000\n", "not UTF-8"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "binary file"),
        ("phone_number,amount\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_what_the_first_bytes_show_is_refused_at_upload_with_400_and_nothing_is_stored(
    content, message, django_capture_on_commit_callbacks
):
    seller = make_seller()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(client_for(seller.user), content, key="k")
    assert response.status_code == 400
    body = response.json()
    assert message in body["detail"]
    assert body["code"] == "invalid"
    assert body["errors"] == {"file": [body["detail"]]}
    assert _nothing_stored()
    assert callbacks == []


def test_a_file_without_a_valid_row_ends_rejected_with_its_errors_and_queues_nothing(
    django_capture_on_commit_callbacks,
):
    seller = make_seller()
    WebhookEndpoint.objects.create(seller=seller, url="https://hooks.example/x", secret="s")
    client = client_for(seller.user)
    content = csv_bytes("phone_number,amount", f"{phone(1)},0", "x,5", f"{phone(2)},99999999999999999999999")
    response = upload(client, content)
    assert (response.status_code, response.json()["status"]) == (202, "validating")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch_import_run(batch_id=response.json()["id"])
    # Nothing to settle, so no wake-up: only the announcement of its batch.completed event to the
    # seller's webhook endpoint.
    assert [callback.__module__ for callback in callbacks] == ["notifications.outbox"]
    body = client.get(f"/api/v1/charge-batches/{response.json()['id']}/").json()
    assert body["status"] == "rejected"
    assert body["completed_at"] is not None
    assert (body["total_rows"], body["valid_rows"], body["invalid_rows"], body["queued"]) == (3, 0, 3, 0)
    assert body["errors"] == [
        {"line": 2, "field": "amount", "message": "Must be greater than zero."},
        {"line": 3, "field": "phone_number", "message": "Enter a valid mobile phone number."},
        {"line": 4, "field": "amount", "message": "Must be at most 1000000000000."},
    ]
    assert not Charge.objects.exists()
    assert [r[3] for r in results_rows(client, body["id"])[1:]] == ["invalid"] * 3
    assert client.get("/api/v1/charge-batches/?status=rejected").json()["results"][0]["id"] == body["id"]


def test_a_file_unreadable_past_its_first_bytes_ends_rejected_and_keeps_none_of_its_rows():
    seller = make_seller()
    rows = [f"{phone(i)},100" for i in range(40_000)]  # far past what the upload looks at
    content = csv_bytes("phone_number,amount", *rows) + b"\xc3\x28,5000\n" + csv_bytes(f"{phone(1)},1")
    assert len(content) > HEAD_BYTES
    response = upload(client_for(seller.user), content)
    assert response.status_code == 202
    batch = batch_import_run(batch_id=response.json()["id"])
    assert batch.status == "rejected"
    [error] = batch.errors
    assert error["field"] == "file"
    assert "The file is not UTF-8 text (undecodable bytes near line" in error["message"]
    assert 39_000 < error["line"] <= 40_002  # decoding runs a block ahead of the rows
    assert batch.valid_rows == 0
    assert not Charge.objects.exists() and not ChargeBatchRejectedRow.objects.exists()
    assert not ChargeBatchFileChunk.objects.exists()


def test_oversize_file_is_refused_with_413(settings):
    settings.LEDGER_BATCH_MAX_BYTES = 100
    seller = make_seller()
    content = csv_bytes("phone_number,amount", *[f"{phone(i)},1000" for i in range(10)])
    response = upload(client_for(seller.user), content)
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The file is {len(content)} bytes; the limit is 100 bytes.",
        "code": "file_too_large",
    }
    assert _nothing_stored()


def test_oversize_upload_is_refused_from_its_content_length_before_reading_it(settings):
    settings.LEDGER_BATCH_MAX_BYTES = 1000
    seller = make_seller()
    content = csv_bytes("phone_number,amount", *[f"{phone(i)},1000" for i in range(20_000)])
    response = upload(client_for(seller.user), content)
    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    assert "upload is" in response.json()["detail"]
    assert _nothing_stored()


def test_same_key_and_file_returns_the_original_batch_and_another_file_is_refused():
    seller = make_seller()
    client = client_for(seller.user)
    content = csv_bytes("phone_number,amount", f"{phone(1)},1000", f"{phone(2)},2000")
    first = upload(client, content, key="march-payroll")
    batch_import_run(batch_id=first.json()["id"])
    again = upload(client, content, key="march-payroll", name="renamed.csv")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "queued"
    other = upload(client, content + f"{phone(3)},3000\n".encode(), key="march-payroll")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert Charge.objects.count() == 2 and ChargeBatch.objects.count() == 1
    # Keys are per seller, and no key means a new batch each time.
    other_seller = make_seller()
    assert imported(client_for(other_seller.user), content, key="march-payroll")["status"] == "queued"
    assert imported(client, content)["status"] == "queued"
    assert Charge.objects.count() == 6
    assert_ledger_audit()


def test_sellers_see_only_their_batches_and_staff_see_all():
    from tests.factories import make_staff

    owner, stranger = make_seller(), make_seller()
    batch_id = imported(client_for(owner.user), csv_bytes("phone_number,amount", f"{phone(1)},1000"))["id"]
    for path in (f"/api/v1/charge-batches/{batch_id}/", f"/api/v1/charge-batches/{batch_id}/results/"):
        assert client_for(stranger.user).get(path).status_code == 404
        assert client_for(owner.user).get(path).status_code == 200
        assert client_for(make_staff("auditor")).get(path).status_code == 200
    assert client_for(stranger.user).get("/api/v1/charge-batches/").json()["results"] == []
    listed = client_for(owner.user).get("/api/v1/charge-batches/").json()
    assert [b["id"] for b in listed["results"]] == [batch_id]
    assert listed["results"][0]["queued"] == 1
    assert client_for(owner.user).get("/api/v1/charge-batches/?status=completed").json()["results"] == []
    assert len(client_for(owner.user).get("/api/v1/charge-batches/?status=queued").json()["results"]) == 1
    staff_list = client_for(make_staff("auditor")).get(f"/api/v1/charge-batches/?seller={stranger.pk}").json()
    assert staff_list["results"] == []
    # Only sellers upload.
    assert upload(client_for(make_staff("admin")), csv_bytes("phone_number,amount", f"{phone(1)},1")).status_code == 403


def test_upload_requires_a_file_and_authentication():
    from rest_framework.test import APIClient

    seller = make_seller()
    response = client_for(seller.user).post("/api/v1/charge-batches/", {}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "file" in response.json()["errors"]
    assert upload(APIClient(), csv_bytes("phone_number,amount", f"{phone(1)},1")).status_code == 401


def test_formula_like_cells_are_kept_as_given_but_neutralized_in_the_results_file():
    seller = make_seller()
    references = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "plain"]
    content = csv_bytes(
        "phone_number,amount,reference",
        *[f'{phone(i)},1000,"{ref.replace(chr(34), chr(34) * 2)}"' for i, ref in enumerate(references)],
        '=1+1,1000,"=evil()"',
    )
    batch_id = imported(client_for(seller.user), content)["id"]
    stored = list(Charge.objects.filter(batch_id=batch_id).order_by("id").values_list("reference", flat=True))
    assert stored == references
    rows = results_rows(client_for(seller.user), batch_id)
    assert [r[2] for r in rows[1:]] == ["'" + r for r in references[:4]] + ["plain", "'=evil()"]
    assert rows[-1][0] == "'=1+1"  # the rejected row's phone as given, neutralized too
    assert rows[1][0] == e164(0)  # an E.164 number is not a formula


def test_results_file_follows_the_input_columns_order():
    seller = make_seller()
    content = csv_bytes("amount,phone_number", f"1000,{phone(1)}", "abc,x")
    batch_id = imported(client_for(seller.user), content)["id"]
    rows = results_rows(client_for(seller.user), batch_id)
    assert rows[0][:3] == ["amount", "phone_number", "charge_id"]
    assert rows[1][:2] == ["1000", e164(1)]
    assert rows[2][:2] == ["abc", "x"]
    assert [r[6] for r in rows[1:]] == ["2", "3"]  # the line column
