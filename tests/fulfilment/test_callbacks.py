"""A provider's callback: the web checks its signature and shape and queues it (202), never asking
the provider; a fulfilment worker's task reads it, checks it against what we asked and records it
(ledger/fulfilment/callbacks.py, run here in this process). Every test ends with the audit."""

import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from celery.signals import before_task_publish
from standardwebhooks import Webhook

from devstack.processes import ROOT, free_port
from ledger.fulfilment.callbacks import ReversalNotPosted, apply_callback
from ledger.fulfilment.service import fulfil_charges
from ledger.models import Account, Charge, Entry
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from providers import get_provider
from providers.base import ProviderError
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import SANDBOX_SECRET, assert_ledger_audit, subprocess_env
from workers.dispatch import APPLY_CALLBACK
from workers.routing import RECONCILE_QUEUE
from workers.tasks import apply_callback_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued():
    """(routing key, kwargs) of every callback this process queues during the test."""
    tasks = []

    def record(sender=None, body=None, routing_key=None, **_):
        if sender == APPLY_CALLBACK:
            tasks.append((routing_key, body[1]))

    before_task_publish.connect(record, weak=False)
    yield tasks
    before_task_publish.disconnect(record)


def _post(client, transaction: dict, *, msg_id: str = "msg_1", secret: str = SANDBOX_SECRET):
    body = json.dumps(transaction)
    now = int(time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    return client.post("/api/v1/provider/callbacks/", data=body, content_type="application/json", headers=headers)


def _deliver(client, queued, transaction: dict, **signing) -> None:
    """The callback as the provider sends it and as the fulfilment worker then applies it."""
    assert _post(client, transaction, **signing).status_code == 202
    _, kwargs = queued.pop()
    apply_callback(**kwargs)


def _sent(amount: int, ending: str):
    """A funded seller and its charge, reserved and sent to the session's sandbox."""
    seller = make_seller()
    request_and_approve(seller, 10_000, make_admin())
    settle_seller(seller_id=seller.pk)
    charge = charge_submit(seller_id=seller.pk, phone_number=f"+98912123{ending}", amount=amount)[0]
    settle_seller(seller_id=seller.pk)
    fulfil_charges([charge.pk])
    charge.refresh_from_db()
    return seller, charge


def _transaction(charge: Charge, status: str, failure_code: str | None = None) -> dict:
    """The sandbox's transaction for the charge, as its signed callback carries it."""
    return {
        "id": int(charge.provider_reference),
        "external_id": charge.external_id,
        "msisdn": charge.phone_number,
        "amount": charge.amount,
        "status": status,
        "failure_code": failure_code,
        "created_at": charge.submitted_at.isoformat(),
        "completed_at": "2026-12-01T00:00:01+00:00",
    }


def _account(seller) -> tuple[int, int]:
    account = Account.objects.get(seller=seller)
    return account.balance, account.held


def test_the_web_checks_a_callback_and_queues_it_for_the_fulfilment_worker(client, queued):
    seller, charge = _sent(1_000, "9905")  # pending: its final answer comes by callback

    response = _post(client, _transaction(charge, "COMPLETED"))

    assert (response.status_code, response.content) == (202, b"")
    ((routing_key, kwargs),) = queued
    assert routing_key == RECONCILE_QUEUE  # beside the reconciler's lookups, never behind sends
    assert kwargs == {"provider": "sandbox", "notice": _transaction(charge, "COMPLETED")}
    charge.refresh_from_db()
    assert charge.outcome is None  # nothing recorded by the web

    apply_callback_task.run(**kwargs)  # the task's body, as the worker runs it
    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.outcome) == ("succeeded", "succeeded")
    assert _account(seller) == (9_000, 0)
    assert_ledger_audit(seller.pk)


def test_callbacks_record_the_answer_once_and_duplicates_or_late_ones_change_nothing(client, queued):
    seller, charge = _sent(1_000, "9905")
    completed = _transaction(charge, "COMPLETED")

    _deliver(client, queued, completed)
    _deliver(client, queued, completed)  # the same callback again
    settle_seller(seller_id=seller.pk)
    _deliver(client, queued, _transaction(charge, "DECLINED", "operator_declined"), msg_id="msg_2")  # late
    settle_seller(seller_id=seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.failure_code) == ("succeeded", None)
    assert _account(seller) == (9_000, 0)
    assert Entry.objects.filter(charge=charge).count() == 1
    assert_ledger_audit(seller.pk)


def test_a_callback_with_a_bad_signature_is_refused_and_nothing_is_queued(client, queued):
    seller, charge = _sent(1_000, "9905")
    forged = _transaction(charge, "DECLINED", "invalid_number")

    response = _post(client, forged, secret="whsec_" + "A" * 32)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_callback")
    unsigned = client.post("/api/v1/provider/callbacks/", data=json.dumps(forged), content_type="application/json")
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "invalid_callback")
    not_a_transaction = _post(client, {"id": 1})
    assert (not_a_transaction.status_code, not_a_transaction.json()["code"]) == (400, "invalid_callback")

    assert queued == []
    charge.refresh_from_db()
    assert charge.outcome is None
    assert _account(seller) == (9_000, 1_000)  # still held
    assert_ledger_audit(seller.pk)


def test_a_reversal_before_the_success_is_posted_is_applied_again_later(client, queued):
    seller, charge = _sent(3_000, "4567")  # answered succeeded, not posted yet
    reversal = _transaction(charge, "REVERSED")
    assert _post(client, reversal).status_code == 202
    _, kwargs = queued.pop()

    with pytest.raises(ReversalNotPosted):
        apply_callback(**kwargs)
    assert ReversalNotPosted in apply_callback_task.autoretry_for  # the worker tries it again later
    settle_seller(seller_id=seller.pk)  # the success is posted
    apply_callback(**kwargs)
    settle_seller(seller_id=seller.pk)

    charge.refresh_from_db()
    assert charge.status == "reversed" and _account(seller) == (10_000, 0)
    kinds = Entry.objects.filter(charge=charge).order_by("seq").values_list("kind", "amount")
    assert list(kinds) == [("charge", -3_000), ("refund", 3_000)]
    assert_ledger_audit(seller.pk)


def test_a_notice_the_provider_does_not_confirm_changes_nothing_and_is_logged(caplog):
    seller, charge = _sent(1_000, "9905")
    with caplog.at_level(logging.WARNING, logger="ledger.fulfilment.callbacks"):
        apply_callback("sandbox", {"id": 1, "external_id": charge.external_id, "status": "COMPLETED"})
    assert "does not confirm" in caplog.text
    charge.refresh_from_db()
    assert charge.outcome is None and _account(seller) == (9_000, 1_000)
    assert_ledger_audit(seller.pk)


@pytest.fixture
def unreachable_dvs(settings):
    """Beside the session's sandbox (still the default provider), a DT One provider `dtone` whose
    API nothing listens for: asking it raises ProviderError."""
    get_provider.cache_clear()
    sandbox = {"kind": "sandbox", "url": settings.PROVIDER_URL, "callback_secret": settings.PROVIDER_CALLBACK_SECRET}
    away = {"kind": "dvs", "url": f"http://127.0.0.1:{free_port()}/dvs/v1", "key": "k", "secret": "s"}
    settings.PROVIDERS, settings.PROVIDER_DEFAULT = {"sandbox": sandbox, "dtone": away}, "sandbox"
    yield get_provider("dtone")
    get_provider.cache_clear()


def test_a_notice_naming_no_charge_of_ours_is_dropped_without_asking_the_provider(unreachable_dvs):
    """DT One's callbacks are unsigned, so anyone can send one: one that names no charge we sent to
    that provider costs a read of our own table, never a request to DT One."""
    seller, charge = _sent(1_000, "9905")  # sent to the default provider, `sandbox`
    strangers = [{"id": 42, "external_id": "someone-else-42"}, {"id": 43, "external_id": charge.external_id}]
    for notice in strangers:
        with pytest.raises(ProviderError):
            unreachable_dvs.read_callback(notice)  # what asking DT One would have done
        apply_callback("dtone", notice)  # returns: nothing asked, nothing to try again

    charge.refresh_from_db()
    assert charge.outcome is None and _account(seller) == (9_000, 1_000)
    assert_ledger_audit(seller.pk)


# With the broker away, the web cannot queue the callback: it answers 503 and the provider sends it
# again. The web touches neither the database nor the provider for it.
UNQUEUED = f"""
import json, time
from datetime import UTC, datetime
import django
django.setup()
from django.test import Client
from standardwebhooks import Webhook
body = json.dumps({{"id": 7, "external_id": "x-1", "msisdn": "+989121234567", "amount": 5,
                   "status": "COMPLETED", "created_at": "2026-12-01T00:00:00+00:00"}})
now = int(time.time())
signature = Webhook({SANDBOX_SECRET!r}).sign("msg_1", datetime.fromtimestamp(now, tz=UTC), body)
headers = {{"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signature}}
response = Client().post("/api/v1/provider/callbacks/", data=body, content_type="application/json", headers=headers)
print(response.status_code, response.json()["code"])
"""


def test_a_callback_that_cannot_be_queued_is_answered_503_for_the_provider_to_send_again():
    env = subprocess_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    result = subprocess.run(
        [sys.executable, "-c", UNQUEUED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["503", "service_unavailable"]
    assert "callback of provider sandbox not queued (OperationalError): answered 503" in result.stderr
