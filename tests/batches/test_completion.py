"""Batch outcomes are counted, and completion recorded, by the settle that settles the charges;
every read (API list, detail, results, admin) only reads."""

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test.utils import CaptureQueriesContext

from ledger.fulfilment.service import fulfil_charges
from ledger.models import Charge, ChargeBatch
from ledger.posting import settle_batch, settle_sellers_batch
from ledger.services.batch_import import batch_import_run
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.batches.helpers import csv_bytes, e164, imported, phone, upload, writes
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db


def funded(amount: int):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    settle_seller(seller_id=seller.pk)
    return seller


def counted_from_charges(batch_id: int) -> tuple[int, int, int]:
    agg = Charge.objects.filter(batch_id=batch_id).aggregate(
        succeeded=Count("id", filter=Q(status="succeeded")),
        failed=Count("id", filter=Q(status="failed")),
        amount=Sum("amount", filter=Q(status="succeeded"), default=0),
    )
    return agg["succeeded"], agg["failed"], agg["amount"]


def test_each_settle_counts_its_batch_charges_and_the_last_one_completes_the_batch():
    seller = funded(1_000)
    client = client_for(seller.user)
    first = imported(client, csv_bytes("phone_number,amount", *[f"{phone(i)},100" for i in range(7)]))
    charge_submit(seller_id=seller.pk, phone_number=e164(99), amount=50)  # not in a batch
    second = imported(client, csv_bytes("phone_number,amount", f"{phone(1)},300", f"{phone(2)},300"))

    seen = []
    after = 0
    while True:
        outcome = settle_batch(seller_id=seller.pk, limit=3, after_charge_id=after)
        after = outcome.last_charge_id
        reserved = list(Charge.objects.filter(seller=seller, stage="reserved").values_list("id", flat=True))
        fulfil_charges(reserved)  # the provider's answers, applied by a later settle of this loop
        if not outcome.intents and not reserved:
            break
        for batch_id in (first["id"], second["id"]):
            batch = ChargeBatch.objects.get(pk=batch_id)
            # Exact after every settle: the counts are written in the settle's own transaction.
            assert (batch.succeeded, batch.failed, batch.succeeded_amount) == counted_from_charges(batch_id)
            still_queued = Charge.objects.filter(batch_id=batch_id, status="queued").count()
            assert batch.queued == still_queued
            assert (batch.status == "completed") == (still_queued == 0)
            seen.append((batch_id, batch.status))
    assert (first["id"], "queued") in seen and (second["id"], "queued") in seen

    one = ChargeBatch.objects.get(pk=first["id"])
    two = ChargeBatch.objects.get(pk=second["id"])
    assert (one.status, one.succeeded, one.failed, one.succeeded_amount) == ("completed", 7, 0, 700)
    # 1000 - 700 - 50 (the single charge, settled between them) leaves 250: both of the second fail.
    assert (two.status, two.succeeded, two.failed, two.succeeded_amount) == ("completed", 0, 2, 0)
    for batch in (one, two):
        assert batch.completed_at == Charge.objects.filter(batch=batch).order_by("-settled_at")[0].settled_at
    assert_ledger_audit()


def test_a_shard_settle_of_several_sellers_counts_each_batch():
    sellers = [funded(500) for _ in range(3)]
    ids = [
        imported(client_for(s.user), csv_bytes("phone_number,amount", f"{phone(1)},200", f"{phone(2)},400"))["id"]
        for s in sellers
    ]
    settle_sellers_batch(seller_ids=[s.pk for s in sellers], limit=100)  # reserves 200, fails 400
    assert {ChargeBatch.objects.get(pk=i).status for i in ids} == {"queued"}  # 200 is not final yet
    fulfil_charges(list(Charge.objects.filter(stage="reserved").values_list("id", flat=True)))
    settle_sellers_batch(seller_ids=[s.pk for s in sellers], limit=100)  # applies the answers
    for batch_id in ids:
        batch = ChargeBatch.objects.get(pk=batch_id)
        assert (batch.status, batch.succeeded, batch.failed, batch.succeeded_amount) == ("completed", 1, 1, 200)
    assert_ledger_audit()


def test_no_get_and_no_admin_page_ever_writes_whatever_the_batch_state():
    from django.test import Client

    seller = funded(10_000)
    api = client_for(seller.user)
    admin = Client()
    admin.force_login(make_admin())
    batch_id = upload(api, csv_bytes("phone_number,amount", f"{phone(1)},100", f"{phone(2)},200", "x,1")).json()["id"]
    rejected_id = upload(api, csv_bytes("phone_number,amount", "x,1")).json()["id"]
    batch_import_run(batch_id=rejected_id)

    def read_everything() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            for path in (
                "/api/v1/charge-batches/",
                "/api/v1/charge-batches/?status=queued",
                f"/api/v1/charge-batches/{batch_id}/",
                f"/api/v1/charge-batches/{rejected_id}/",
            ):
                assert api.get(path).status_code == 200
            results = api.get(f"/api/v1/charge-batches/{batch_id}/results/")
            assert results.status_code == 200
            b"".join(results.streaming_content)
            for path in ("/admin/ledger/chargebatch/", f"/admin/ledger/chargebatch/{batch_id}/change/"):
                assert admin.get(path).status_code == 200
        return writes(queries)

    assert read_everything() == []  # validating
    batch_import_run(batch_id=batch_id)
    assert read_everything() == []  # queued, nothing settled: a read must not complete anything
    assert ChargeBatch.objects.get(pk=batch_id).status == "queued"
    settle_seller(seller_id=seller.pk)
    assert read_everything() == []  # reserved, not final: still nothing to complete
    settle_through_provider(seller.pk)
    assert ChargeBatch.objects.get(pk=batch_id).status == "completed"  # by the settle, before any read
    assert read_everything() == []
    assert api.get(f"/api/v1/charge-batches/{batch_id}/").json()["succeeded_amount"] == 300
    assert_ledger_audit()
