"""Events from the same transaction as their change: the settle's, a rejection's, balance.low,
and the feed API's scoping (no worker processes: the settle is called directly)."""

import pytest
from django.db import transaction
from django.test import override_settings

from ledger.models import Charge
from ledger.posting import settle_batch
from ledger.services.deposits import deposit_reject, deposit_request
from notifications import tasks
from notifications.api.serializers import EventOutput
from notifications.models import Event, SellerFeed, WebhookEndpoint
from notifications.services import feed_settings_update
from tests.factories import client_for, make_admin, make_seller, make_staff, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db


def _charge(seller, amount):
    return Charge.objects.create(seller=seller, phone_number="+989121234567", amount=amount)


def _events(seller):
    """(seq, type, data) as clients see them."""
    rows = [EventOutput(event).data for event in Event.objects.filter(seller=seller).order_by("seq")]
    return [(row["seq"], row["type"], row["data"]) for row in rows]


def test_settle_writes_one_event_per_intent_in_sequence_with_the_batch():
    admin, seller = make_admin(), make_seller()
    deposit_id = request_and_approve(seller, 100, admin)
    ok, too_big = _charge(seller, 60), _charge(seller, 50)
    settle_batch(seller_id=seller.pk, limit=100)  # credits, reserves `ok`, fails `too_big`: final now
    settle_through_provider(seller.pk)  # `ok` succeeds once the provider has topped it up
    assert _events(seller) == [
        (1, "deposit.approved", {"deposit_id": deposit_id, "amount": 100, "status": "approved", "balance_after": 100}),
        (
            2,
            "charge.failed",
            {"charge_id": too_big.pk, "amount": 50, "status": "failed", "failure_code": "insufficient_funds"},
        ),
        (3, "charge.succeeded", {"charge_id": ok.pk, "amount": 60, "status": "succeeded", "balance_after": 40}),
    ]
    assert SellerFeed.objects.get(seller=seller).last_seq == 3
    assert_ledger_audit(seller.pk)


def test_a_rolled_back_settle_leaves_no_event():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100, admin)
    with pytest.raises(RuntimeError), transaction.atomic():
        settle_batch(seller_id=seller.pk, limit=100)
        raise RuntimeError("crash before commit")
    assert _events(seller) == []
    settle_batch(seller_id=seller.pk, limit=100)
    assert [t for _, t, _ in _events(seller)] == ["deposit.approved"]
    assert_ledger_audit(seller.pk)


def test_balance_low_when_a_batch_crosses_the_threshold_only():
    admin, seller = make_admin(), make_seller()
    feed_settings_update(seller=seller, low_balance_threshold=50)
    request_and_approve(seller, 100, admin)
    settle_batch(seller_id=seller.pk, limit=100)
    _charge(seller, 30)
    settle_through_provider(seller.pk)  # 70: above
    _charge(seller, 30)
    settle_through_provider(seller.pk)  # 40: crossed, when the hold is placed
    _charge(seller, 10)
    settle_through_provider(seller.pk)  # 30: already below
    types = [t for _, t, _ in _events(seller)]
    assert types == ["deposit.approved", "charge.succeeded", "balance.low", "charge.succeeded", "charge.succeeded"]
    assert _events(seller)[2][2] == {"balance": 40, "threshold": 50}
    assert_ledger_audit(seller.pk)


def test_rejection_writes_its_event_in_the_sellers_sequence():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100, admin)
    settle_batch(seller_id=seller.pk, limit=100)
    deposit, _ = deposit_request(seller=seller, amount=5)
    deposit_reject(deposit_id=deposit.pk, rejected_by=admin, reason="no proof")
    assert _events(seller)[-1] == (
        2,
        "deposit.rejected",
        {"deposit_id": deposit.pk, "amount": 5, "status": "rejected", "reason": "no proof"},
    )


@override_settings(NOTIFICATIONS_EVENTS=False)
def test_events_can_be_turned_off_for_the_settle():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100, admin)
    settle_batch(seller_id=seller.pk, limit=100)
    assert _events(seller) == []
    assert_ledger_audit(seller.pk)


def test_only_sellers_with_an_enabled_endpoint_get_a_fan_out_task(monkeypatch, django_capture_on_commit_callbacks):
    """A fan-out task per settle of every seller cost the shard worker a publish and the webhook
    worker a task, for sellers with nothing to deliver to."""
    admin = make_admin()
    subscribed, disabled, without = make_seller(), make_seller(), make_seller()
    for seller, enabled in ((subscribed, True), (disabled, False)):
        WebhookEndpoint.objects.create(seller=seller, url="https://hooks.example/x", secret="s", enabled=enabled)
    for seller in (subscribed, disabled, without):
        request_and_approve(seller, 100, admin)
    published = []
    monkeypatch.setattr(tasks.fan_out_task, "apply_async", lambda args, **_: published.append(args[0]))
    for seller in (subscribed, disabled, without):
        with django_capture_on_commit_callbacks(execute=True):
            settle_batch(seller_id=seller.pk, limit=100)  # deposit.approved
        with django_capture_on_commit_callbacks(execute=True):
            deposit, _ = deposit_request(seller=seller, amount=5)
            deposit_reject(deposit_id=deposit.pk, rejected_by=admin, reason="no proof")  # deposit.rejected
    # Sellers of an earlier test's rolled-back transaction may ride along (they are announced with
    # the thread's next commit): only this test's sellers are counted.
    ours = {subscribed.pk, disabled.pk, without.pk}
    assert [mine for ids in published if (mine := [s for s in ids if s in ours])] == [[subscribed.pk]] * 2
    assert [SellerFeed.objects.get(seller=s).last_seq for s in (subscribed, disabled, without)] == [2, 2, 2]
    assert_ledger_audit()


def test_feed_shows_a_seller_only_its_own_events_newest_first():
    admin, mine, other = make_admin(), make_seller(), make_seller()
    for seller in (mine, other):
        request_and_approve(seller, 100, admin)
        settle_batch(seller_id=seller.pk, limit=100)
        _charge(seller, 10)
        settle_through_provider(seller.pk)
    client = client_for(mine.user)
    page = client.get("/api/v1/events/").json()
    assert [(e["seller"], e["seq"], e["type"]) for e in page["results"]] == [
        (mine.pk, 2, "charge.succeeded"),
        (mine.pk, 1, "deposit.approved"),
    ]
    assert [e["type"] for e in client.get("/api/v1/events/?type=deposit.approved").json()["results"]] == [
        "deposit.approved"
    ]
    theirs = Event.objects.filter(seller=other).first()
    assert client.get(f"/api/v1/events/{theirs.pk}/").status_code == 404
    assert client.get(f"/api/v1/events/{page['results'][0]['id']}/").status_code == 200
    staff = client_for(make_staff("auditor"))
    assert {e["seller"] for e in staff.get(f"/api/v1/events/?seller={other.pk}").json()["results"]} == {other.pk}
    assert client.get("/api/v1/events/?created_after=not-a-date").status_code == 400


def test_endpoints_and_deliveries_of_another_seller_answer_404():
    mine, other = make_seller(), make_seller()
    created = client_for(other.user).post(
        "/api/v1/webhook-endpoints/", {"url": "http://127.0.0.1:9/hook", "event_types": []}, format="json"
    )
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    endpoint_id = created.json()["id"]
    client = client_for(mine.user)
    assert client.get("/api/v1/webhook-endpoints/").json()["results"] == []
    for path in ("", "deliveries/"):
        assert client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/{path}").status_code == 404
    for path in ("rotate-secret/", "test/", "deliveries/1/redeliver/"):
        assert client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/{path}").status_code == 404
    assert (
        client.patch(f"/api/v1/webhook-endpoints/{endpoint_id}/", {"enabled": False}, format="json").status_code == 404
    )
    assert client.delete(f"/api/v1/webhook-endpoints/{endpoint_id}/").status_code == 404
    assert "secret" not in client_for(other.user).get(f"/api/v1/webhook-endpoints/{endpoint_id}/").json()


def test_private_addresses_are_refused_unless_allowed(settings):
    seller = make_seller()
    client = client_for(seller.user)
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    for url in ("http://127.0.0.1:8000/hook", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/"):
        answer = client.post("/api/v1/webhook-endpoints/", {"url": url}, format="json")
        assert answer.status_code == 400 and answer.json()["code"] == "webhook_url_refused", url
    assert client.post("/api/v1/webhook-endpoints/", {"url": "ftp://example.com/"}, format="json").status_code == 400
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    assert (
        client.post("/api/v1/webhook-endpoints/", {"url": "http://127.0.0.1:8000/hook"}, format="json").status_code
        == 201
    )


def test_a_batch_announces_its_completion_after_its_charges_and_a_rejected_one_too():
    from tests.batches.helpers import csv_bytes, imported, phone

    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 150, admin)
    client = client_for(seller.user)
    batch = imported(client, csv_bytes("phone_number,amount", f"{phone(1)},100", f"{phone(2)},100"))
    settle_through_provider(seller.pk)
    types = [event_type for _, event_type, _ in _events(seller)]
    assert types == ["deposit.approved", "charge.failed", "charge.succeeded", "batch.completed"]
    assert _events(seller)[-1][2] == {"batch_id": batch["id"], "status": "completed", "succeeded": 1, "failed": 1}

    rejected = imported(client, csv_bytes("phone_number,amount", "not-a-phone,100"))
    assert rejected["status"] == "rejected"
    assert _events(seller)[-1][1:] == (
        "batch.completed",
        {"batch_id": rejected["id"], "status": "rejected", "succeeded": 0, "failed": 0},
    )
    assert_ledger_audit(seller.pk)


def test_notification_settings_answer_options():
    response = client_for(make_seller().user).options("/api/v1/notification-settings/")
    assert response.status_code == 200 and "PUT" in response.json()["actions"]
