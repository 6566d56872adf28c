"""A statement shows what each charge sold: the product, its face value in the destination's
currency and the seller's price (what the charge held)."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.models import Charge
from ledger.statements.build import statement_build, statement_pieces, statement_request
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db

MCI = "+989121234567"  # MCI: fixed airtime from 500,000 IRR (amounts in the smallest unit: 50,000,000)


def test_a_statement_entry_names_the_product_its_face_value_and_the_price(synced):
    seller = make_seller()
    request_and_approve(seller, 10_000_000, make_admin())
    started = timezone.now() - timedelta(seconds=1)
    sold = client_for(seller.user).post("/api/v1/charges/", {"phone_number": MCI, "amount": 50_000_000}, format="json")
    assert sold.status_code == 202, sold.json()
    settle_through_provider(seller.pk)
    charge = Charge.objects.select_related("product_version__product").get(pk=sold.json()["id"])

    statement, _ = statement_request(seller_id=seller.pk, period_start=started, period_end=timezone.now())
    statement = statement_build(statement_id=statement.pk)
    document = json.loads(b"".join(statement_pieces(statement=statement, fmt="json")))

    [entry] = [e for e in document["entries"] if e["kind"] == "charge"]
    assert entry["charge"]["product"] == {
        "id": charge.product_version.product_id,
        "name": charge.product_version.product.name,
    }
    assert entry["charge"]["face_value"] == {"amount": 50_000_000, "currency": "IRR"}
    assert entry["charge"]["price"] == charge.amount == -entry["amount"]
    rows = csv.DictReader(io.StringIO(b"".join(statement_pieces(statement=statement, fmt="csv")).decode()))
    [row] = [r for r in rows if r["record"] == "entry" and r["kind"] == "charge"]
    assert (row["product"], row["product_name"], row["face_value"], row["face_currency"], row["price"]) == (
        str(charge.product_version.product_id),
        charge.product_version.product.name,
        "50000000",
        "IRR",
        str(charge.amount),
    )
    assert_ledger_audit(seller.pk)
