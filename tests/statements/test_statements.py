"""Statements: built by the worker's service, downloaded as JSON, CSV and PDF, announced by
`statement.ready`; the seller's verifier (`ledger_verify.py`, run as the seller would run it)
passes an untouched one and fails each kind of tampering."""

import base64
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import override_settings
from django.utils import timezone
from pypdf import PdfReader

from ledger.models import Account, Entry, Statement
from ledger.statements import signing
from ledger.statements.build import statement_build, statement_request
from ledger.statements.checkpoints import checkpoints_sign_active
from notifications.models import Event
from tests.factories import client_for
from tests.statements import tamper
from tests.statements.history import busy_history
from tests.support import assert_ledger_audit
from workers.statement_tasks import build_statement_task

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
US = timedelta(microseconds=1)


def _period(seller):
    first = Entry.objects.filter(seller=seller).order_by("seq").values_list("created_at", flat=True).first()
    return first - timedelta(seconds=1), timezone.now()


def _statement(seller, start, end) -> Statement:
    statement, _ = statement_request(seller_id=seller.pk, period_start=start, period_end=end)
    return statement_build(statement_id=statement.pk)


def _download(client, statement, fmt) -> bytes:
    response = client.get(f"/api/v1/statements/{statement.pk}/download/{fmt}/")
    assert response.status_code == 200, response
    return b"".join(response.streaming_content)


def _verify(tmp_path, statement_bytes: bytes, *kept: bytes, keys: bytes | None = None, suffix="json"):
    paths = []
    for i, data in enumerate((statement_bytes, *kept)):
        path = tmp_path / f"input{i}.{suffix if i == 0 else 'json'}"
        path.write_bytes(data)
        paths.append(str(path))
    key_path = tmp_path / "keys.json"
    key_path.write_bytes(keys if keys is not None else client_for(None).get("/api/v1/statements/public-key/").content)
    result = subprocess.run(
        [sys.executable, str(ROOT / "ledger_verify.py"), *paths, "--public-key", str(key_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def history():
    seller = busy_history()
    start, end = _period(seller)
    return seller, start, end


def test_an_untouched_statement_verifies_in_json_and_csv(history, tmp_path):
    seller, start, end = history
    statement = _statement(seller, start, end)
    client = client_for(seller.user)
    body = client.get(f"/api/v1/statements/{statement.pk}/").json()
    assert body["status"] == "ready" and body["formats"] == ["json", "csv", "pdf"]
    account = Account.objects.get(seller=seller)
    assert (body["opening_seq"], body["closing_seq"], body["closing_balance"]) == (0, account.last_seq, account.balance)

    document = _download(client, statement, "json")
    data = json.loads(document)
    assert [e["seq"] for e in data["entries"]] == list(range(1, account.last_seq + 1))
    kinds = {e["kind"] for e in data["entries"]}
    assert data["totals"] == {
        kind: {
            "count": sum(1 for e in data["entries"] if e["kind"] == kind),
            "amount": sum(e["amount"] for e in data["entries"] if e["kind"] == kind),
        }
        for kind in kinds
    }
    charge = next(e["charge"] for e in data["entries"] if e["kind"] == "charge")
    assert set(charge) >= {"id", "phone_number", "price", "product", "face_value"}

    code, out = _verify(tmp_path, document)
    assert code == 0, out
    code, out = _verify(tmp_path, _download(client, statement, "csv"), suffix="csv")
    assert code == 0, out
    assert_ledger_audit(seller.pk)


def test_the_verifier_fails_an_amount_edited_in_the_database(history, tmp_path):
    seller, start, end = history
    tamper.edit_amount(seller.pk, 3, -1)
    code, out = _verify(tmp_path, _download(client_for(seller.user), _statement(seller, start, end), "json"))
    assert code == 1 and "edited: entry seq 3" in out and "balance chain broken at seq 4" in out, out


def test_the_verifier_fails_a_deleted_entry(history, tmp_path):
    seller, start, end = history
    tamper.delete_entry(seller.pk, 4)
    code, out = _verify(
        tmp_path, _download(client_for(seller.user), _statement(seller, start, end), "csv"), suffix="csv"
    )
    assert code == 1 and "removed: entry seq 4 is missing" in out, out


def test_the_verifier_fails_two_entries_swapped_in_the_database(history, tmp_path):
    seller, start, end = history
    tamper.swap_entries(seller.pk, 2, 3)
    code, out = _verify(tmp_path, _download(client_for(seller.user), _statement(seller, start, end), "json"))
    assert code == 1 and "edited: entry seq 2" in out and "edited: entry seq 3" in out, out


def test_the_verifier_fails_entries_listed_out_of_order(history, tmp_path):
    seller, start, end = history
    data = json.loads(_download(client_for(seller.user), _statement(seller, start, end), "json"))
    data["entries"][1], data["entries"][2] = data["entries"][2], data["entries"][1]
    code, out = _verify(tmp_path, json.dumps(data).encode())
    assert code == 1 and "reordered: entry seq 2 is listed after seq 3" in out, out


def test_the_verifier_fails_a_history_cut_short_after_a_checkpoint(history, tmp_path):
    seller, start, end = history
    client = client_for(seller.user)
    checkpoints_sign_active()
    kept = client.get("/api/v1/checkpoints/").content  # what the seller downloaded and kept
    last = Account.objects.get(seller=seller).last_seq
    tamper.delete_newest(seller.pk, last - 2)

    statement = _download(client, _statement(seller, start, end), "json")

    code, out = _verify(tmp_path, statement)
    assert code == 0, out  # alone, a shortened history signed afresh is consistent: only kept checkpoints catch it
    code, out = _verify(tmp_path, statement, kept)
    assert code == 1 and f"cut short: the checkpoint of seq {last}" in out, out


def test_the_verifier_fails_a_signature_made_with_another_key(history, tmp_path):
    seller, start, end = history
    published = client_for(None).get("/api/v1/statements/public-key/").content
    other = base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()
    with override_settings(STATEMENT_SIGNING_KEY=other):
        signing.signing_key.cache_clear()
        try:
            statement = _download(client_for(seller.user), _statement(seller, start, end), "json")
            forged = json.loads(statement)
            forged["checkpoint"]["key_id"] = json.loads(published)["keys"][0]["key_id"]  # claims the real key
        finally:
            signing.signing_key.cache_clear()
    code, out = _verify(tmp_path, statement, keys=published)
    assert code == 1 and "not among the public keys given" in out, out
    code, out = _verify(tmp_path, json.dumps(forged).encode(), keys=published)
    assert code == 1 and "signature does not verify" in out, out


def test_the_build_is_a_worker_task_that_announces_the_statement_and_a_pdf_holds_its_text(history):
    seller, start, end = history
    client = client_for(seller.user)
    response = client.post(
        "/api/v1/statements/", {"period_start": start.isoformat(), "period_end": end.isoformat()}, format="json"
    )
    assert response.status_code == 202, response.content
    statement_id = response.json()["id"]
    again = client.post(
        "/api/v1/statements/", {"period_start": start.isoformat(), "period_end": end.isoformat()}, format="json"
    )
    assert (again.status_code, again.json()["id"]) == (200, statement_id)
    assert client.get(f"/api/v1/statements/{statement_id}/download/json/").status_code == 409  # not built yet

    build_statement_task(statement_id)
    build_statement_task(statement_id)  # a redelivery adds nothing

    events = Event.objects.filter(seller_id=seller.pk, type="statement.ready")
    assert [e.data["statement_id"] for e in events] == [statement_id]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(_pdf(client, statement_id))).pages)
    account = Account.objects.get(seller=seller)
    assert f"Statement of seller {seller.pk}" in text
    assert f"Closing balance: {account.balance}" in text
    assert "Signed checkpoint of the closing head" in text


def _pdf(client, statement_id) -> bytes:
    response = client.get(f"/api/v1/statements/{statement_id}/download/pdf/")
    assert response["Content-Type"] == "application/pdf"
    return b"".join(response.streaming_content)


def test_a_statement_of_a_period_not_over_is_refused_and_other_sellers_see_nothing(history):
    seller, start, _ = history
    client = client_for(seller.user)
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    response = client.post(
        "/api/v1/statements/", {"period_start": start.isoformat(), "period_end": future}, format="json"
    )
    assert response.status_code == 400
    statement = _statement(seller, start, timezone.now())
    from tests.factories import make_seller

    other = client_for(make_seller().user)
    assert other.get(f"/api/v1/statements/{statement.pk}/").status_code == 404
    assert other.get(f"/api/v1/statements/{statement.pk}/download/csv/").status_code == 404
    assert other.get("/api/v1/statements/").json()["results"] == []


def test_the_verifier_fails_an_entry_inserted_into_the_file_and_refuses_an_unreadable_one(history, tmp_path):
    seller, start, end = history
    data = json.loads(_download(client_for(seller.user), _statement(seller, start, end), "json"))
    forged = dict(data["entries"][2], amount=data["entries"][2]["amount"])
    data["entries"].insert(3, forged)
    code, out = _verify(tmp_path, json.dumps(data).encode())
    assert code == 1 and f"inserted: seq {forged['seq']} appears more than once" in out, out
    code, out = _verify(tmp_path, b"not a statement")
    assert code == 2 and "cannot read" in out, out
