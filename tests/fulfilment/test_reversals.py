"""Reversals and late successes through the real shard, fulfilment and import workers and the
session's sandbox provider: a reversal by callback and by lookup (the reconciler, the daily close)
ends in one refund entry, however often it is delivered; a late success is a conflict listed in
ops/queues and the metrics until an admin settles it, by a debit (never below zero) or a booked
loss, once. Every test ends with the audit."""

import json
import time
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from standardwebhooks import Webhook

from ledger.fulfilment import identity
from ledger.models import Account, Charge, Entry, Installation, ProviderConflict
from ledger.provider_account.close import close_day
from notifications.models import Event
from providers import get_provider
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import SANDBOX_SECRET, assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _until(found, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        if value := found():
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout}s")


def _funded(amount: int):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    return seller


def _charge(seller, ending: str, amount: int = 1_000) -> int:
    response = client_for(seller.user).post(
        "/api/v1/charges/", {"phone_number": f"0912123{ending}", "amount": amount}, format="json"
    )
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def _final(charge_id: int) -> Charge:
    return _until(lambda: Charge.objects.filter(pk=charge_id, stage="done").first(), what=f"charge {charge_id} final")


def _balance(seller) -> tuple[int, int]:
    account = Account.objects.get(seller=seller)
    return account.balance, account.held


def _record(sandbox, charge: Charge) -> dict:
    return next(t for t in sandbox.transactions() if t["external_id"] == charge.external_id)


def _callback(client, transaction: dict, msg_id: str):
    """The provider's signed callback (the sandbox's dialect), as the sandbox would POST it."""
    body = json.dumps(transaction)
    now = int(time.time())
    signature = Webhook(SANDBOX_SECRET).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    return client.post("/api/v1/provider/callbacks/", data=body, content_type="application/json", headers=headers)


def _close_today(charge: Charge):
    """The daily close of today, run here: the workers are started once for the session and each
    keeps the installation token of the database it first saw (the tests flush it between tests),
    so this process adopts the token the charge was sent under. Its writes wake the real workers."""
    token = charge.external_id[len(settings.PROVIDER_EXTERNAL_ID_PREFIX) :].rsplit("-", 1)[0]
    Installation.objects.update_or_create(id=1, defaults={"token": token})
    identity.installation_token.cache_clear()
    return close_day(get_provider(), timezone.now().date())


def _kinds(charge_id: int) -> list[tuple[str, int]]:
    return list(Entry.objects.filter(charge_id=charge_id).order_by("seq").values_list("kind", "amount"))


@pytest.fixture
def sandbox(session_sandbox):
    return session_sandbox


def test_a_reversal_by_callback_refunds_once_however_often_it_is_delivered(workers, sandbox, client):
    seller = _funded(10_000)
    charge = _final(_charge(seller, "4567", 3_000))
    assert charge.status == "succeeded" and _balance(seller) == (7_000, 0)

    reversed_ = sandbox.force_status(charge.external_id, "REVERSED")  # the provider reverses it
    for _ in range(3):  # delivered three times (the provider retries until it hears 2xx)
        assert _callback(client, reversed_, msg_id=f"tx_{reversed_['id']}_REVERSED").status_code == 202
    charge = _until(lambda: Charge.objects.filter(pk=charge.pk, status="reversed").first(), what="reversed")

    assert (charge.stage, charge.outcome, charge.reversal_reason) == ("done", "succeeded", "REVERSED")
    assert charge.reversed_at >= charge.settled_at
    assert _balance(seller) == (10_000, 0)
    assert _kinds(charge.pk) == [("charge", -3_000), ("refund", 3_000)]
    events = Event.objects.filter(seller_id=seller.pk, type="charge.reversed")
    assert list(events.values_list("charge_id", "amount", "balance_after")) == [(charge.pk, 3_000, 10_000)]
    feed = client_for(seller.user).get("/api/v1/events/").json()["results"]
    (public,) = [e for e in feed if e["type"] == "charge.reversed"]
    assert public["data"] == {
        "charge_id": charge.pk,
        "amount": 3_000,
        "status": "reversed",
        "balance_after": 10_000,
        "reason": "REVERSED",
    }
    shown = client_for(seller.user).get(f"/api/v1/charges/{charge.pk}/").json()
    assert (shown["status"], shown["stage"]) == ("reversed", "done")
    assert_ledger_audit(seller.pk)


def test_a_reversal_found_by_the_daily_close_refunds_through_the_same_lifecycle(workers, sandbox):
    seller = _funded(10_000)
    charge = _final(_charge(seller, "9908", 2_500))  # completed, reversed reverse-seconds later
    assert charge.status == "succeeded"
    _until(lambda: _record(sandbox, charge)["status"] == "REVERSED", what="the sandbox's reversal")
    assert Charge.objects.get(pk=charge.pk).status == "succeeded"  # no callback reaches this test's server

    assert _close_today(charge).reversed == 1
    charge = _until(lambda: Charge.objects.filter(pk=charge.pk, status="reversed").first(), what="reversed")

    assert charge.reversal_reason == "REVERSED"
    assert _balance(seller) == (10_000, 0)
    assert _kinds(charge.pk) == [("charge", -2_500), ("refund", 2_500)]
    # A second close of the day finds the reversal again and records nothing new.
    assert _close_today(charge).reversed == 1
    time.sleep(0.5)
    assert _kinds(charge.pk) == [("charge", -2_500), ("refund", 2_500)]
    assert_ledger_audit(seller.pk)


def _declined(seller, amount: int = 1_000) -> Charge:
    charge = _final(_charge(seller, "9902", amount))
    assert (charge.status, charge.failure_code) == ("failed", "operator_declined")
    return charge


def _late_success(sandbox, client, charge: Charge) -> None:
    """The provider says it completed what it had declined, by callback, which the fulfilment
    worker records as a conflict."""
    completed = sandbox.force_status(charge.external_id, "COMPLETED")
    assert _callback(client, completed, msg_id=f"tx_{completed['id']}_COMPLETED").status_code == 202
    _until(lambda: ProviderConflict.objects.filter(charge_id=charge.pk).exists(), what="the conflict")


def _metric(admin, name: str) -> float:
    text = admin.get("/api/v1/ops/metrics/").content.decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_a_late_success_is_listed_and_alerted_until_an_admin_debits_the_seller_once(workers, sandbox, client):
    seller = _funded(10_000)
    charge = _declined(seller)
    assert _balance(seller) == (10_000, 0)
    _late_success(sandbox, client, charge)
    _late_success(sandbox, client, charge)  # seen twice: one conflict

    charge.refresh_from_db()
    assert (charge.status, _balance(seller)) == ("failed", (10_000, 0))  # never applied silently
    admin = client_for(make_admin())
    conflicts = admin.get("/api/v1/ops/conflicts/?status=open").json()["results"]
    assert [(c["charge"], c["seller"], c["amount"], c["status"]) for c in conflicts] == [
        (charge.pk, seller.pk, 1_000, "open")
    ]
    queues = admin.get("/api/v1/ops/queues/").json()["fulfilment"]["conflicts"]
    assert queues["late_successes_open"] == 1
    assert _metric(admin, "ledger_provider_late_successes_open") == 1

    settle = f"/api/v1/ops/conflicts/{charge.pk}/settle/"
    assert admin.post(settle, {"action": "debit"}, format="json").status_code == 202
    _until(lambda: ProviderConflict.objects.filter(charge_id=charge.pk, status="debited").exists(), what="debited")
    assert _balance(seller) == (9_000, 0)
    assert _kinds(charge.pk) == [("charge", -1_000), ("release", 1_000), ("adjustment", -1_000)]

    again = admin.post(settle, {"action": "debit"}, format="json")  # settling twice does nothing
    assert (again.status_code, again.json()["status"]) == (200, "debited")
    refused = admin.post(settle, {"action": "book_loss"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "invalid_state")
    time.sleep(0.5)
    assert _balance(seller) == (9_000, 0)
    assert _kinds(charge.pk)[-1] == ("adjustment", -1_000) and len(_kinds(charge.pk)) == 3
    assert _metric(admin, "ledger_provider_late_successes_open") == 0
    assert_ledger_audit(seller.pk)


def test_a_late_success_the_balance_cannot_cover_stays_open_then_the_loss_is_booked(workers, sandbox, client):
    seller = _funded(1_000)
    charge = _declined(seller)
    spent = _final(_charge(seller, "4567", 1_000))  # the seller spends what the release gave back
    assert spent.status == "succeeded" and _balance(seller) == (0, 0)
    _late_success(sandbox, client, charge)

    admin = client_for(make_admin())
    settle = f"/api/v1/ops/conflicts/{charge.pk}/settle/"
    assert admin.post(settle, {"action": "debit"}, format="json").status_code == 202
    conflict = _until(
        lambda: ProviderConflict.objects.filter(charge_id=charge.pk, status="open").exclude(refusal="").first(),
        what="the debit refused",
    )
    assert conflict.refusal == "balance 0 does not cover 1000"
    assert _balance(seller) == (0, 0)  # never below zero
    assert _metric(admin, "ledger_provider_late_success_debits_refused") == 1

    booked = admin.post(settle, {"action": "book_loss"}, format="json")
    assert (booked.status_code, booked.json()["status"]) == (200, "loss_booked")
    again = admin.post(settle, {"action": "book_loss"}, format="json")
    assert (again.status_code, again.json()["status"]) == (200, "loss_booked")
    assert admin.post(settle, {"action": "debit"}, format="json").status_code == 409
    assert _kinds(charge.pk) == [("charge", -1_000), ("release", 1_000)]
    assert _balance(seller) == (0, 0)
    assert admin.get("/api/v1/ops/queues/").json()["fulfilment"]["conflicts"]["late_successes_open"] == 0
    assert_ledger_audit(seller.pk)


def test_a_late_success_found_by_the_daily_close_is_a_conflict_not_an_outcome(workers, sandbox):
    seller = _funded(5_000)
    charge = _declined(seller)
    sandbox.force_status(charge.external_id, "COMPLETED")  # no callback: only the record says so

    assert _close_today(charge).missing_here >= 1  # (earlier tests left top-ups the flushed database lost)
    conflict = _until(lambda: ProviderConflict.objects.filter(charge_id=charge.pk).first(), what="the conflict")
    assert (conflict.status, conflict.amount, conflict.seller_id) == ("open", 1_000, seller.pk)
    wait_settled(seller.pk)
    assert Charge.objects.get(pk=charge.pk).status == "failed"
    assert _balance(seller) == (5_000, 0)
    assert_ledger_audit(seller.pk)
