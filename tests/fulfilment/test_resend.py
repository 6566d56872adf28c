"""Unknown outcomes resolved by resending, not by waiting (ledger/fulfilment/reconcile.py): a sent
charge the provider has no record of is sent again under the same external id, on a short capped
schedule; it fails only on the provider's own refusal, with that refusal's code, and one the
provider never answers stays held. Against the session's real sandbox provider, the workers' steps
run in this process; every test ends with the audit."""

import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings

from ledger import charge_lifecycle as lifecycle
from ledger.fulfilment.gate import gate_for
from ledger.fulfilment.identity import Asked, external_id_prefix
from ledger.fulfilment.reconcile import look_up_open_charges, open_charges_report
from ledger.fulfilment.service import answer_from, fulfil_charges
from ledger.models import Charge, Entry
from ledger.services.settlement import settle_seller
from providers import get_provider
from providers.base import Outcome, SubmitResult
from tests.fulfilment.test_lifecycle import _account, _charge, _external_id, _funded, phone
from tests.support import SANDBOX_SECRET, assert_ledger_audit

pytestmark = pytest.mark.django_db


def _lost_before_it_reached_the_provider(seller, ending: str = "4567", amount: int = 1_000) -> Charge:
    """A charge claimed and sent whose answer was lost, and which the provider never received: what a
    request on a stale keep-alive connection was left as before the transport sent it again."""
    charge = _charge(seller, amount, ending)
    settle_seller(seller_id=seller.pk)
    assert lifecycle.claim_for_sending([charge.pk], first_check_after=60, external_id_prefix=external_id_prefix())
    assert lifecycle.mark_unknown([charge.pk], check_after=0) == 1
    charge.refresh_from_db()
    return charge


def _record(sandbox, charge: Charge) -> list[tuple]:
    sent_as = _external_id(charge)
    return [(t["status"], t["amount"]) for t in sandbox.transactions() if t["external_id"] == sent_as]


def test_an_unknown_the_provider_has_no_record_of_is_sent_again_under_its_id_and_succeeds(session_sandbox):
    seller = _funded(10_000)
    charge = _lost_before_it_reached_the_provider(seller)
    sent_as = charge.external_id
    assert _record(session_sandbox, charge) == []

    run = look_up_open_charges()

    assert (run.checked, run.resent, run.answered) == (1, 1, 1)
    charge.refresh_from_db()
    assert (charge.outcome, charge.external_id, charge.sends) == ("succeeded", sent_as, 2)
    settle_seller(seller_id=seller.pk)
    assert Charge.objects.get(pk=charge.pk).status == "succeeded"
    assert _record(session_sandbox, charge) == [("COMPLETED", 1_000)]  # one top-up, under the first id
    assert _account(seller) == (9_000, 0)
    assert_ledger_audit(seller.pk)


def test_a_resent_charge_fails_only_on_the_providers_own_refusal(session_sandbox):
    seller = _funded(10_000)
    charge = _lost_before_it_reached_the_provider(seller, "9901")

    assert look_up_open_charges().resent == 1

    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.failure_code) == ("failed", "invalid_number")
    assert _record(session_sandbox, charge) == [("DECLINED", 1_000)]  # the provider's refusal, on record
    assert _account(seller) == (10_000, 0)
    assert_ledger_audit(seller.pk)


def _due_now(charge: Charge) -> None:
    Charge.objects.filter(pk=charge.pk).update(next_check_at=charge.created_at)


def test_a_request_the_provider_never_answers_stays_held_and_is_sent_again_on_a_capped_schedule(
    session_sandbox, settings
):
    seller = _funded(10_000)
    charge = _charge(seller, 2_500, "9904")  # hangs past our read timeout every time, never recorded
    settle_seller(seller_id=seller.pk)
    assert fulfil_charges([charge.pk]).unknown == 1

    delays = []
    for _ in range(4):
        _due_now(charge)
        assert look_up_open_charges().resent == 1  # not found, so sent again: lost again
        charge.refresh_from_db()
        delays.append(round(charge.next_check_at.timestamp() - time.time()))
    first, most = settings.PROVIDER_RESEND_AFTER, settings.PROVIDER_RESEND_BACKOFF_MAX
    assert delays == [min(most, first * 2**n) for n in range(4)]  # 1, 2, 4, 8 s with the defaults

    assert (charge.stage, charge.outcome, charge.sends) == ("unknown", None, 5)
    assert _record(session_sandbox, charge) == []
    assert _account(seller) == (7_500, 2_500)  # held: never released, never timed out
    assert open_charges_report()["resending"] == 1
    assert gate_for(get_provider().name).breaker_state() == "closed"  # its lookups were answered
    assert_ledger_audit(seller.pk)


def test_a_charge_whose_answer_came_meanwhile_is_not_sent_again(session_sandbox):
    seller = _funded(10_000)
    charge = _lost_before_it_reached_the_provider(seller)
    lifecycle.record_answers([lifecycle.Answer(charge.pk, lifecycle.SUCCEEDED)])  # a callback, say
    assert lifecycle.resend([charge.pk], lease=10) == []
    assert look_up_open_charges().checked == 0
    assert _record(session_sandbox, charge) == []
    settle_seller(seller_id=seller.pk)
    assert_ledger_audit(seller.pk)


@pytest.fixture
def own_gate(settings):
    """The provider's gate on keys of this test's own, closed."""
    prefix = f"test:resend:{uuid.uuid4().hex[:12]}:"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": prefix}
    gate_for.cache_clear()
    yield gate_for(get_provider().name)
    gate_for.cache_clear()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    if keys := list(client.scan_iter(f"{prefix}*")):
        client.delete(*keys)


def test_after_an_outage_the_reconcilers_lookups_close_the_half_open_breaker(own_gate, settings):
    seller = _funded(10_000)
    for _ in range(settings.PROVIDER_BREAKER_FAILURES):
        own_gate.record_failure()
    assert own_gate.breaker_state() == "open"
    charge = _lost_before_it_reached_the_provider(seller)
    assert look_up_open_charges().checked == 0  # open: nothing is asked
    time.sleep(settings.PROVIDER_BREAKER_RESET + 0.1)
    assert own_gate.breaker_state() == "half-open"

    assert look_up_open_charges().resent == 1  # the trial: looked up, sent again, answered

    assert own_gate.breaker_state() == "closed"
    settle_seller(seller_id=seller.pk)
    assert Charge.objects.get(pk=charge.pk).status == "succeeded"
    assert_ledger_audit(seller.pk)


def test_while_closed_the_reconciler_never_clears_the_failures_the_sends_count(own_gate):
    seller = _funded(10_000)
    own_gate.record_failure()
    own_gate.record_failure()
    _lost_before_it_reached_the_provider(seller)
    assert look_up_open_charges().answered == 1
    assert own_gate.snapshot()["failures"] == 2
    settle_seller(seller_id=seller.pk)
    assert_ledger_audit(seller.pk)


def test_a_reconciler_run_that_reaches_nothing_is_a_failure_and_resends_nothing(own_gate, session_sandbox):
    seller = _funded(10_000)
    charge = _lost_before_it_reached_the_provider(seller)
    session_sandbox.configure(down=True)
    try:
        run = look_up_open_charges()
    finally:
        session_sandbox.configure(down=False)
    assert (run.checked, run.unreachable, run.resent) == (1, 1, 0)
    assert own_gate.snapshot()["failures"] == 1
    charge.refresh_from_db()
    assert (charge.stage, charge.outcome, charge.sends, charge.checks) == ("unknown", None, 1, 1)
    assert _account(seller) == (9_000, 1_000)
    assert_ledger_audit(seller.pk)


@pytest.fixture
def dvs_provider(settings, session_sandbox):
    """The DT One adapter, pointed at the sandbox's DVS dialect, as this process's provider."""
    settings.PROVIDER_KIND, settings.PROVIDER_URL = "dvs", f"{session_sandbox.url}/dvs/v1"
    settings.PROVIDER_API_KEY, settings.PROVIDER_API_SECRET = "sandbox", "sandbox-secret"
    settings.PROVIDER_CALLBACK_SECRET = SANDBOX_SECRET
    get_provider.cache_clear()
    yield get_provider()
    get_provider.cache_clear()


def test_a_refusal_about_our_account_fails_the_charge_with_its_own_code(dvs_provider):
    seller = _funded(10_000)
    charge = _charge(seller, 1_000)  # a house product: not one our DT One account sells
    settle_seller(seller_id=seller.pk)
    assert fulfil_charges([charge.pk]).answered == 1
    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.failure_code) == ("failed", "product_unavailable")
    assert list(Entry.objects.filter(charge=charge).order_by("seq").values_list("kind", flat=True)) == [
        "charge",
        "release",
    ]
    assert_ledger_audit(seller.pk)


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        ("insufficient_balance", "provider_insufficient_balance"),
        ("product_unavailable", "product_unavailable"),
        (None, "provider_rejected"),
    ],
)
def test_each_refusal_reason_has_a_failure_code_of_its_own(refusal, code):
    asked = Asked(1, "x", phone(), 1_000, None)
    said = SubmitResult(Outcome.FAILED, failure_code="provider_rejected", refusal=refusal)
    assert answer_from(asked, said).failure_code == code
