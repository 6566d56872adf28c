import csv
import io

import pytest

from ledger.models import Charge, Deposit, Entry
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.api.helpers import assert_error, bearer
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider


def _csv(response) -> list[dict]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def ledger_world(db):
    admin, seller, other = make_admin(), make_seller(), make_seller()
    request_and_approve(seller, 100_000, admin)
    request_and_approve(other, 50_000, admin)
    for n, reference in enumerate(['=HYPERLINK("http://x")', "@SUM(A1)", "plain", "+cmd|' /C calc'!A0"]):
        charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=1_000 * (n + 1), reference=reference)
    settle_seller(seller_id=seller.pk)
    settle_seller(seller_id=other.pk)
    return admin, seller, other


def test_export_streams_the_sellers_rows_newest_first_with_formulas_neutralized(ledger_world):
    admin, seller, other = ledger_world
    rows = _csv(bearer(seller.user).get("/api/v1/transactions/export/"))
    assert [int(r["seq"]) for r in rows] == [5, 4, 3, 2, 1]
    assert {r["seller"] for r in rows} == {str(seller.pk)}
    assert [r["amount"] for r in rows] == ["-4000", "-3000", "-2000", "-1000", "100000"]
    references = [r["reference"] for r in rows[:4]]
    assert references == ["'+cmd|' /C calc'!A0", "plain", "'@SUM(A1)", '\'=HYPERLINK("http://x")']
    assert rows[0]["phone_number"] == "+989121234567" and rows[0]["balance_after"] == "90000"
    assert rows[0]["created_at"].endswith("+00:00")
    # The JSON list and the export agree on ids and order.
    listed = bearer(seller.user).get("/api/v1/transactions/").json()["results"]
    assert [r["id"] for r in listed] == [int(r["id"]) for r in rows]
    assert_ledger_audit()


def test_export_honors_filters_and_staff_see_all_sellers(ledger_world):
    admin, seller, other = ledger_world
    charges = _csv(bearer(seller.user).get("/api/v1/transactions/export/?kind=charge&seq_after=2"))
    assert [int(r["seq"]) for r in charges] == [5, 4, 3]
    everyone = _csv(bearer(admin).get("/api/v1/transactions/export/"))
    assert {int(r["seller"]) for r in everyone} == {seller.pk, other.pk}
    theirs = _csv(bearer(admin).get(f"/api/v1/transactions/export/?seller={other.pk}"))
    assert [r["amount"] for r in theirs] == ["50000"]
    assert_error(bearer(seller.user).get("/api/v1/transactions/export/?kind=nope"), 400, "invalid")
    assert_ledger_audit()


def test_transactions_use_cursor_pagination_newest_first(ledger_world):
    admin, seller, _ = ledger_world
    client = bearer(seller.user)
    page = client.get("/api/v1/transactions/?page_size=2").json()
    seen = [r["seq"] for r in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [r["seq"] for r in page["results"]]
    assert seen == [5, 4, 3, 2, 1]
    assert Entry.objects.filter(seller=seller).count() == 5
    assert_ledger_audit()


def test_reconcile_reports_balance_and_ledger_sum(ledger_world):
    admin, seller, _ = ledger_world
    body = bearer(admin).get(f"/api/v1/sellers/{seller.pk}/reconcile/").json()
    assert body == {
        "seller": seller.pk,
        "balance": 90_000,
        "held": 10_000,  # its charges are reserved: the provider has not answered them here
        "open_holds": 10_000,
        "ledger_sum": 90_000,
        "entries": 5,
        "last_seq": 5,
        "ok": True,
    }
    assert_ledger_audit()


def test_charge_list_filters_and_ordering(ledger_world):
    admin, seller, _ = ledger_world
    client = bearer(seller.user)
    by_amount = client.get("/api/v1/charges/?ordering=amount").json()["results"]
    assert [c["amount"] for c in by_amount] == [1000, 2000, 3000, 4000]
    newest = client.get("/api/v1/charges/").json()["results"]
    assert [c["amount"] for c in newest] == [4000, 3000, 2000, 1000]
    # Any common spelling of the number finds the charges.
    assert len(client.get("/api/v1/charges/?phone_number=0912 123 4567").json()["results"]) == 4
    assert client.get("/api/v1/charges/?status=failed").json()["results"] == []
    paged = client.get("/api/v1/charges/?page_size=3").json()
    assert len(paged["results"]) == 3 and paged["next"] and paged["previous"] is None
    assert [d["status"] for d in client.get("/api/v1/deposits/?status=approved").json()["results"]] == ["approved"]
    assert_ledger_audit()


@pytest.mark.django_db
def test_idempotency_key_same_body_returns_original_and_different_body_is_409():
    seller = make_seller()
    client = bearer(seller.user)
    body = {"phone_number": "09121234567", "amount": 500}
    first = client.post("/api/v1/charges/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    again = client.post(
        "/api/v1/charges/", {**body, "phone_number": "+989121234567"}, format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )
    assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
    assert_error(
        client.post("/api/v1/charges/", {**body, "amount": 501}, format="json", HTTP_IDEMPOTENCY_KEY="order-1"),
        409,
        "idempotency_key_reused",
    )
    # Keys are per seller, and charges without a key are never deduplicated.
    assert (
        bearer(make_seller().user)
        .post("/api/v1/charges/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        .status_code
        == 202
    )
    assert [client.post("/api/v1/charges/", body, format="json").status_code for _ in range(2)] == [202, 202]
    assert Charge.objects.filter(seller=seller).count() == 3

    deposit = client.post("/api/v1/deposits/", {"amount": 9}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")
    deposit_again = client.post("/api/v1/deposits/", {"amount": 9}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1")
    assert (deposit.status_code, deposit_again.status_code) == (201, 200)
    assert_error(
        client.post("/api/v1/deposits/", {"amount": 10}, format="json", HTTP_IDEMPOTENCY_KEY="dep-1"),
        409,
        "idempotency_key_reused",
    )
    assert Deposit.objects.filter(seller=seller).count() == 1


@pytest.mark.django_db
def test_the_charge_posts_shared_representation_is_the_serializers():
    from ledger.api.serializers import ChargeOutput, charge_representation

    seller = make_seller()
    queued, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=5, reference="r")
    request_and_approve(seller, 10, make_admin())
    settle_through_provider(seller.pk)
    failed, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=50)
    settle_seller(seller_id=seller.pk)
    charges = (queued, Charge.objects.get(pk=queued.pk), Charge.objects.get(pk=failed.pk))
    assert [c.status for c in charges] == ["queued", "succeeded", "failed"]
    for charge in charges:
        assert charge_representation(charge) == ChargeOutput(charge).data
    assert_ledger_audit()


@pytest.mark.django_db
def test_a_failed_charge_stays_failed_for_its_key_even_after_funding():
    seller, admin = make_seller(), make_admin()
    client = bearer(seller.user)
    body = {"phone_number": "09121234567", "amount": 5_000}
    first = client.post("/api/v1/charges/", body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    settle_seller(seller_id=seller.pk)
    request_and_approve(seller, 10_000, admin)
    settle_seller(seller_id=seller.pk)
    retry = client.post("/api/v1/charges/", body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    assert (retry.json()["status"], retry.json()["failure_code"]) == ("failed", "insufficient_funds")
    settle_seller(seller_id=seller.pk)
    assert Charge.objects.filter(seller=seller).count() == 1
    assert Entry.objects.filter(seller=seller).count() == 1  # the deposit only
    assert_ledger_audit()
