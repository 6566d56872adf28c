"""External ids unique for the provider account whatever happens to our database, and answers
checked against what we asked before they settle anything (ledger/fulfilment/identity.py). Run
against the session's real sandbox provider; every test ends with the audit."""

import logging

import pytest
import requests
from django.core.management import call_command

from ledger.fulfilment import identity
from ledger.fulfilment.reconcile import look_up_open_charges
from ledger.fulfilment.service import fulfil_charges
from ledger.models import Charge, Installation, ProviderMismatch
from ledger.services.settlement import settle_seller
from tests.fulfilment.test_lifecycle import _account, _charge, _funded, phone
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_token_cache():
    """This process may have cached a token of a row an earlier test's flush removed."""
    identity.installation_token.cache_clear()
    yield
    identity.installation_token.cache_clear()


def _send_directly(sandbox, external_id: str, msisdn: str, amount: int) -> dict:
    """What an earlier database (or another stack) sent to the same provider account."""
    answer = requests.post(
        f"{sandbox.url}/v1/transactions",
        json={"external_id": external_id, "msisdn": msisdn, "amount": amount},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _send_and_look_up(seller, settings) -> Charge:
    settle_seller(seller_id=seller.pk)
    fulfil_charges(list(Charge.objects.filter(seller=seller, stage="reserved").values_list("id", flat=True)))
    settings.PROVIDER_LOOKUP_AFTER = 0
    Charge.objects.filter(seller=seller).update(next_check_at="2000-01-01T00:00:00Z")
    look_up_open_charges()
    settle_seller(seller_id=seller.pk)
    return Charge.objects.get(seller=seller)


def test_external_ids_carry_the_installation_token_and_are_fixed_when_first_sent(session_sandbox):
    seller = _funded(10_000)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    fulfil_charges([charge.pk])
    charge.refresh_from_db()
    token = Installation.objects.get().token
    assert charge.external_id == f"{identity.external_id_prefix()}{charge.pk}"
    assert token in charge.external_id
    assert [t["external_id"] for t in session_sandbox.transactions() if t["external_id"] == charge.external_id]
    assert_ledger_audit(seller.pk)


def test_a_new_installation_token_never_renames_a_charge_already_sent(session_sandbox, settings):
    seller = _funded(10_000)
    charge = _charge(seller, 1_000, "9904")  # hangs: the answer is lost, the charge is unknown
    settings.PROVIDER_READ_TIMEOUT = 0.5
    settle_seller(seller_id=seller.pk)
    fulfil_charges([charge.pk])
    sent_as = Charge.objects.get(pk=charge.pk).external_id

    call_command("rotate_installation_id")
    identity.installation_token.cache_clear()
    assert Installation.objects.get().token not in sent_as
    Charge.objects.filter(pk=charge.pk).update(stage="reserved", submitted_at=None)  # as if unclaimed
    fulfil_charges([charge.pk])
    assert Charge.objects.get(pk=charge.pk).external_id == sent_as
    assert_ledger_audit(seller.pk)


def test_an_answer_about_an_earlier_databases_transaction_settles_nothing(session_sandbox, settings, caplog):
    """A reset database gives charge ids out again: the provider's answer about the old
    transaction (same id, number and amount, created before our charge) is a mismatch."""
    settings.PROVIDER_CLOCK_SKEW = 0
    seller = _funded(10_000)
    probe = _charge(_funded(1_000), 1_000)  # tells the next charge id; never settled here
    # Our next charge's id, already used by "an earlier database" before the charge exists.
    _send_directly(session_sandbox, f"{identity.external_id_prefix()}{probe.pk + 1}", phone(), 2_000)
    assert _charge(seller, 2_000).pk == probe.pk + 1

    with caplog.at_level(logging.ERROR, logger="ledger.fulfilment.service"):
        charge = _send_and_look_up(seller, settings)

    assert (charge.status, charge.stage, charge.outcome, charge.failure_code) == ("queued", "unknown", None, None)
    assert charge.sends == 1  # found, though not as asked: never sent again
    assert _account(seller)[1] == 2_000  # still held: neither posted nor released
    mismatch = ProviderMismatch.objects.get(charge=charge)
    assert "before our charge" in mismatch.detail
    assert any(getattr(r, "event", None) == "ledger.provider_mismatch" for r in caplog.records)
    assert_ledger_audit(seller.pk)


def test_an_id_the_provider_holds_with_another_body_is_a_mismatch_not_a_failed_sale(session_sandbox, settings):
    seller = _funded(10_000)
    charge = _charge(seller, 3_000)
    _send_directly(session_sandbox, f"{identity.external_id_prefix()}{charge.pk}", phone("7777"), 3_000)

    charge = _send_and_look_up(seller, settings)

    assert (charge.status, charge.stage, charge.outcome, charge.failure_code, charge.sends) == (
        "queued",
        "unknown",
        None,
        None,
        1,
    )
    assert _account(seller) == (7_000, 3_000)
    assert (
        "409" in ProviderMismatch.objects.get(charge=charge).detail
        or "number" in ProviderMismatch.objects.get(charge=charge).detail
    )
    assert_ledger_audit(seller.pk)
