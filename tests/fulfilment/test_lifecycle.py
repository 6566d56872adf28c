"""A charge's lifecycle against the session's real sandbox provider, the workers' steps run in this
process: reserve (the settle), send (fulfil_charges), look up (the reconciler), apply (the settle).
Every test ends with the audit."""

import io
import time

import pytest
import requests

from ledger import charge_lifecycle as lifecycle
from ledger.fulfilment.identity import external_id_prefix
from ledger.fulfilment.reconcile import (
    charges_reserved_of_shard,
    charges_to_redispatch,
    look_up_open_charges,
    provider_window,
)
from ledger.fulfilment.service import fulfil_charges
from ledger.models import Account, Charge, Entry
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db


def phone(ending: str = "4567") -> str:
    return f"+98912123{ending}"


def _funded(amount: int):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    settle_seller(seller_id=seller.pk)
    return seller


def _charge(seller, amount: int, ending: str = "4567") -> Charge:
    return charge_submit(seller_id=seller.pk, phone_number=phone(ending), amount=amount)[0]


def _account(seller) -> tuple[int, int]:
    account = Account.objects.get(seller=seller)
    return account.balance, account.held


def _reserved_ids(seller) -> list[int]:
    return list(Charge.objects.filter(seller=seller, stage="reserved").order_by("id").values_list("id", flat=True))


def test_a_reservation_holds_the_credit_and_the_providers_success_posts_it(session_sandbox):
    seller = _funded(10_000)
    charge = _charge(seller, 3_000)

    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.stage, charge.balance_after) == ("queued", "reserved", 7_000)
    assert _account(seller) == (7_000, 3_000)  # available, held
    assert_ledger_audit(seller.pk)

    run = fulfil_charges([charge.pk])
    assert run.answered == 1
    charge.refresh_from_db()
    assert (charge.status, charge.stage, charge.outcome) == ("queued", "submitted", "succeeded")
    assert _account(seller) == (7_000, 3_000)  # an answer changes nothing until the settle applies it

    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.stage, charge.balance_after) == ("succeeded", "done", 7_000)
    assert charge.provider_reference
    assert _account(seller) == (7_000, 0)
    assert list(Entry.objects.filter(charge=charge).values_list("kind", "amount")) == [("charge", -3_000)]
    record = [t for t in session_sandbox.transactions() if t["external_id"] == _external_id(charge)]
    assert [(t["status"], t["amount"], t["msisdn"]) for t in record] == [("COMPLETED", 3_000, phone())]
    assert_ledger_audit(seller.pk)


@pytest.mark.parametrize(("ending", "code"), [("9901", "invalid_number"), ("9902", "operator_declined")])
def test_a_decline_releases_the_hold_and_the_credit_comes_back_exactly(ending, code):
    seller = _funded(10_000)
    declined, kept = _charge(seller, 4_000, ending), _charge(seller, 1_000)

    settle_through_provider(seller.pk)

    declined.refresh_from_db()
    assert (declined.status, declined.stage, declined.failure_code, declined.balance_after) == (
        "failed",
        "done",
        code,
        None,
    )
    assert Charge.objects.get(pk=kept.pk).status == "succeeded"
    assert _account(seller) == (9_000, 0)
    entries = list(Entry.objects.filter(seller=seller).order_by("seq").values_list("kind", "amount", "balance_after"))
    assert entries == [
        ("deposit", 10_000, 10_000),
        ("charge", -4_000, 6_000),
        ("charge", -1_000, 5_000),
        ("release", 4_000, 9_000),
    ]
    assert_ledger_audit(seller.pk)


def test_an_overdraft_fails_at_the_reservation_and_is_never_sent(session_sandbox):
    seller = _funded(5_000)
    charges = [_charge(seller, 2_000) for _ in range(4)]

    settle_seller(seller_id=seller.pk)

    stages = [Charge.objects.get(pk=c.pk) for c in charges]
    assert [(c.stage, c.failure_code) for c in stages] == [
        ("reserved", None),
        ("reserved", None),
        ("done", "insufficient_funds"),
        ("done", "insufficient_funds"),
    ]
    settle_through_provider(seller.pk)
    sent = {t["external_id"] for t in session_sandbox.transactions()}
    assert [_external_id(c) in sent for c in charges] == [True, True, False, False]
    assert _account(seller) == (1_000, 0)
    assert_ledger_audit(seller.pk)


def test_a_dropped_answer_is_unknown_until_the_lookup_finds_the_top_up(session_sandbox):
    seller = _funded(10_000)
    charge = _charge(seller, 2_500)
    settle_seller(seller_id=seller.pk)
    # The worker's claim; its request reached the provider, which topped up, and the answer was
    # lost on the way back (a dropped connection the transport cannot take for a stale one).
    [asked] = lifecycle.claim_for_sending([charge.pk], first_check_after=60, external_id_prefix=external_id_prefix())
    body = {"external_id": asked[1], "msisdn": phone(), "amount": 2_500}
    requests.post(f"{session_sandbox.url}/v1/transactions", json=body, timeout=5).raise_for_status()
    assert lifecycle.mark_unknown([charge.pk], check_after=0) == 1
    assert _account(seller) == (7_500, 2_500)  # never released blindly

    run = look_up_open_charges()
    assert (run.answered, run.resent) == (1, 0)  # found: never sent again
    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.provider_reference is not None, charge.sends) == ("succeeded", True, 1)
    assert _account(seller) == (7_500, 0)
    record = [t for t in session_sandbox.transactions() if t["external_id"] == _external_id(charge)]
    assert len(record) == 1  # one top-up, found, never sent again under a new identity
    assert_ledger_audit(seller.pk)


def test_a_pending_top_up_completes_by_lookup():
    seller = _funded(10_000)
    charge = _charge(seller, 1_000, "9905")
    settle_seller(seller_id=seller.pk)
    run = fulfil_charges(_reserved_ids(seller))
    charge.refresh_from_db()
    assert (run.pending, charge.stage, charge.provider_reference is not None) == (1, "submitted", True)

    _look_up_until_answered(charge)
    settle_seller(seller_id=seller.pk)
    assert Charge.objects.get(pk=charge.pk).status == "succeeded"
    assert _account(seller) == (9_000, 0)
    assert_ledger_audit(seller.pk)


def test_a_429_puts_the_charge_back_and_the_resend_under_the_same_id_completes(session_sandbox):
    seller = _funded(10_000)
    charge = _charge(seller, 1_000, "9906")  # 429 once, then completes
    settle_seller(seller_id=seller.pk)

    first = fulfil_charges(_reserved_ids(seller))
    charge.refresh_from_db()
    assert (first.retry_later, charge.stage) == ([charge.pk], "reserved")
    assert first.countdown >= 1.0  # Retry-After
    time.sleep(first.countdown)
    second = fulfil_charges(first.retry_later)
    assert second.answered == 1
    settle_seller(seller_id=seller.pk)
    assert Charge.objects.get(pk=charge.pk).status == "succeeded"
    record = [t for t in session_sandbox.transactions() if t["external_id"] == _external_id(charge)]
    assert len(record) == 1
    assert_ledger_audit(seller.pk)


def test_a_second_send_of_the_same_charges_sends_nothing(session_sandbox):
    """A redelivered task, or the redispatch beside the first: the claim lets one of them send."""
    seller = _funded(10_000)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    before = session_sandbox.stats()

    assert fulfil_charges([charge.pk]).answered == 1
    assert fulfil_charges([charge.pk]).answered == 0
    after = session_sandbox.stats()["responses"]
    assert after.get("201", 0) - before["responses"].get("201", 0) == 1
    record = [t for t in session_sandbox.transactions() if t["external_id"] == _external_id(charge)]
    assert len(record) == 1
    settle_seller(seller_id=seller.pk)
    assert_ledger_audit(seller.pk)


def test_reserved_charges_nobody_sent_are_found_for_redispatch(settings):
    seller = _funded(10_000)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    assert charge.pk not in charges_to_redispatch()
    Charge.objects.filter(pk=charge.pk).update(reserved_at=charge.created_at.replace(year=2000))
    assert charge.pk in charges_to_redispatch()
    assert_ledger_audit(seller.pk)


def test_a_shard_recovery_finds_the_shards_charges_still_reserved_before_it_connected():
    seller, other = _funded(10_000), _funded(10_000)
    shards = 4
    assert seller.pk % shards != other.pk % shards
    unsent, sent = _charge(seller, 1_000), _charge(seller, 1_000)
    _charge(other, 1_000)
    settle_seller(seller_id=seller.pk)
    settle_seller(seller_id=other.pk)
    assert fulfil_charges([sent.pk]).answered == 1  # claimed: no longer the recovery's to send
    reserved_at = Charge.objects.get(pk=unsent.pk).reserved_at.timestamp()

    def found(**kwargs) -> list[int]:
        return charges_reserved_of_shard(shard=seller.pk % shards, shards=shards, **kwargs)

    assert found() == [unsent.pk]
    assert found(reserved_before=reserved_at + 1) == [unsent.pk]
    assert found(reserved_before=reserved_at - 1) == []  # reserved after the worker connected
    settle_seller(seller_id=seller.pk)
    assert_ledger_audit(seller.pk)


def _external_id(charge: Charge) -> str | None:
    """The id the charge was sent under (None: never sent)."""
    return Charge.objects.values_list("external_id", flat=True).get(pk=charge.pk)


def test_reconcile_provider_window_matches_our_succeeded_charges_with_its_top_ups():
    seller = _funded(20_000)
    charges = [_charge(seller, 1_000, ending) for ending in ("1111", "9901", "2222")]
    settle_through_provider(seller.pk)
    since = min(c.created_at for c in charges)

    report = provider_window(since=since)
    assert report.clean and report.matched >= 2
    Charge.objects.filter(pk=charges[0].pk).update(
        destination_amount=999
    )  # what we asked differs from what it delivered
    report = provider_window(since=since)
    assert report.amount_mismatches == [(charges[0].pk, 999, 1_000)]


def _look_up_until_answered(charge: Charge, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        Charge.objects.filter(pk=charge.pk).update(next_check_at=charge.created_at)  # due now
        look_up_open_charges()
        if Charge.objects.get(pk=charge.pk).outcome is not None:
            return
        time.sleep(0.3)
    raise AssertionError(f"charge {charge.pk} still unanswered after {timeout}s")


def test_the_api_shows_stage_provider_reference_and_held():
    seller = _funded(10_000)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    api = client_for(seller.user)

    shown = api.get(f"/api/v1/charges/{charge.pk}/").json()
    assert (shown["status"], shown["stage"], shown["provider_reference"]) == ("queued", "reserved", None)
    assert api.get("/api/v1/me/").json()["seller"] | {} == {
        "id": seller.pk,
        "name": seller.name,
        "balance": 9_000,
        "held": 1_000,
    }
    settle_through_provider(seller.pk)
    shown = api.get(f"/api/v1/charges/{charge.pk}/").json()
    assert (shown["status"], shown["stage"]) == ("succeeded", "done") and shown["provider_reference"]
    assert api.get("/api/v1/me/").json()["seller"]["held"] == 0
    assert_ledger_audit(seller.pk)


def test_the_reconcile_provider_command_reports_and_fails_on_a_disagreement():
    from django.core.management import CommandError, call_command

    seller = _funded(20_000)
    charges = [_charge(seller, 1_000) for _ in range(2)]
    settle_through_provider(seller.pk)
    since = min(c.created_at for c in charges).isoformat()  # earlier tests' top-ups are not ours
    out = io.StringIO()
    call_command("reconcile_provider", "--since", since, stdout=out)
    assert "amount mismatches: 0" in out.getvalue()

    Charge.objects.filter(pk=charges[1].pk).update(destination_amount=1_001)
    with pytest.raises(CommandError, match="disagree"):
        call_command("reconcile_provider", "--since", since, stdout=io.StringIO())
    with pytest.raises(CommandError, match="neither"):
        call_command("reconcile_provider", "--since", "yesterday-ish")
