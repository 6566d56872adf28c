"""The daily close of the session's real sandbox provider: our charges sent today, fulfilled
through it in this process, against its transaction list and its balance. Each test sends under
an external id prefix of its own, so the top-ups of earlier tests (rolled back here, kept there)
are another installation's."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from ledger.models import Charge
from ledger.provider_account.close import close_day, day_bounds
from ledger.provider_account.floats import poll_float
from ledger.provider_account.models import ProviderBalanceSnapshot, ProviderClose, ProviderFunding
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from providers import get_provider
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import settle_through_provider
from workers.provider_account_tasks import provider_close_task

pytestmark = pytest.mark.django_db

BALANCE = 10**11


@pytest.fixture
def sandbox(session_sandbox, settings):
    settings.PROVIDER_EXTERNAL_ID_PREFIX = f"c{uuid.uuid4().hex[:8]}_"
    yield session_sandbox
    session_sandbox.set_balance(BALANCE)


def _sent(*endings: str) -> list[Charge]:
    """Charges of 1,000 to numbers ending so, sent through the sandbox and settled (9901: declined)."""
    seller = make_seller()
    request_and_approve(seller, 100_000, make_admin())
    settle_seller(seller_id=seller.pk)
    charges = [
        charge_submit(seller_id=seller.pk, phone_number=f"+98912123{ending}", amount=1_000)[0] for ending in endings
    ]
    settle_through_provider(seller.pk)
    return [Charge.objects.get(pk=charge.pk) for charge in charges]


def _today():
    return timezone.now().date()


def test_a_close_that_matches(sandbox):
    charges = _sent("4567", "4568", "9901")
    assert [c.status for c in charges] == ["succeeded", "succeeded", "failed"]

    close = close_day(get_provider(), _today())

    assert (close.status, close.charges, close.matched, close.still_open) == ("done", 3, 2, 0)
    assert (close.missing_at_provider, close.missing_here, close.mismatched, close.reversed) == (0, 0, 0, 0)
    assert close.delivered_cost == sum(c.cost for c in charges[:2]) and close.uncosted == 0
    assert ProviderClose.objects.filter(provider=get_provider().name, day=_today()).count() == 1
    close_day(get_provider(), _today())  # run again: the day's result replaced, not doubled
    assert ProviderClose.objects.filter(provider=get_provider().name, day=_today()).count() == 1


def test_a_close_finds_a_top_up_missing_here_one_missing_there_and_an_amount_mismatch(sandbox):
    delivered, declined, mismatched, matched = _sent("4567", "9901", "4569", "4570")
    # The provider's record says otherwise than ours: an operator completed the declined top-up
    # and declined the delivered one afterwards (no money moves in the sandbox for either).
    sandbox.force_status(declined.external_id, "COMPLETED")
    sandbox.force_status(delivered.external_id, "DECLINED", status_detail="DECLINED")
    Charge.objects.filter(pk=mismatched.pk).update(destination_amount=mismatched.destination_amount + 1)

    close = close_day(get_provider(), _today())

    assert (close.matched, close.missing_at_provider, close.missing_here, close.mismatched) == (1, 1, 1, 1)
    assert close.discrepancies["missing_at_provider"] == [delivered.pk]
    assert close.discrepancies["missing_here"] == [declined.external_id]
    assert close.discrepancies["amount_mismatches"] == [
        {"charge": mismatched.pk, "ours": mismatched.destination_amount + 1, "theirs": mismatched.destination_amount}
    ]
    with pytest.raises(CommandError, match="disagree"):
        call_command("provider_close", "--date", _today().isoformat())


def test_a_reversal_is_listed_and_its_cost_comes_back_in_the_equation(sandbox):
    kept, reversed_ = _sent("4567", "4568")
    sandbox.force_status(reversed_.external_id, "REVERSED")

    close = close_day(get_provider(), _today())

    assert (close.matched, close.reversed, close.reversed_cost) == (1, 1, reversed_.cost)
    assert close.discrepancies["reversals"] == [
        {"charge": reversed_.pk, "external_id": reversed_.external_id, "ours": "succeeded", "cost": reversed_.cost}
    ]


def _snapshot_at(moment, available: int) -> None:
    provider = get_provider()
    ProviderBalanceSnapshot.objects.create(
        provider=provider.name, available=available, currency="USD", polled_at=moment
    )


def test_funding_makes_the_money_equation_balance(sandbox):
    start, _ = day_bounds(_today())
    opening = 5_000_000
    _snapshot_at(start + timedelta(seconds=30), opening)  # the poll nearest the day's start
    charges = _sent("4567", "4568")
    spent = sum(c.cost for c in charges)
    funded = 1_000_000
    # Our balance there now: what it was, less what the top-ups cost, plus what we sent it. The
    # sandbox's own dialect draws nothing, so its balance is set to what a provider would show.
    sandbox.set_balance(opening - spent + funded)
    poll_float(get_provider())

    unfunded = close_day(get_provider(), _today())
    assert (unfunded.start_balance, unfunded.end_balance) == (opening, opening - spent + funded)
    assert (unfunded.delivered_cost, unfunded.funding) == (spent, 0)
    assert (unfunded.balanced, unfunded.difference) == (False, funded)

    admin = client_for(make_admin())
    funded_at = start + (timezone.now() - start) / 2  # inside today and never in the future, whatever the hour
    recorded = admin.post(
        "/api/v1/ops/provider-funding/",
        {"amount": funded, "currency": "USD", "at": funded_at.isoformat(), "reference": "wire-1"},
        format="json",
    )
    assert recorded.status_code == 201, recorded.json()
    assert recorded.json()["provider"] == get_provider().name
    assert ProviderFunding.objects.get(reference="wire-1").recorded_by is not None
    again = admin.post(
        "/api/v1/ops/provider-funding/",
        {"amount": funded, "currency": "USD", "at": start.isoformat(), "reference": "wire-1"},
        format="json",
    )
    assert (again.status_code, again.json()["code"]) == (400, "invalid")

    funded_close = close_day(get_provider(), _today())
    assert (funded_close.funding, funded_close.difference, funded_close.balanced) == (funded, 0, True)
    call_command("provider_close", "--date", _today().isoformat())  # clean: exits zero


def test_without_a_snapshot_at_both_bounds_the_equation_is_unknown(sandbox):
    _sent("4567")
    close = close_day(get_provider(), _today())
    assert (close.balanced, close.difference, close.start_balance) == (None, None, None)


def test_funding_in_another_currency_leaves_the_equation_unknown_and_says_why(sandbox):
    start, _ = day_bounds(_today())
    _snapshot_at(start + timedelta(seconds=30), 5_000)
    _snapshot_at(start + timedelta(seconds=90), 5_000)
    ProviderFunding.objects.create(provider=get_provider().name, amount=10, currency="EUR", at=start, reference="eur")
    close = close_day(get_provider(), _today())
    assert close.balanced is None and "another currency" in close.error


def test_the_admin_endpoints_queue_a_close_and_list_the_results(sandbox, django_capture_on_commit_callbacks):
    admin = client_for(make_admin())
    with django_capture_on_commit_callbacks() as published:
        queued = admin.post("/api/v1/ops/provider-close/", {"date": _today().isoformat()}, format="json")
    assert len(published) == 1  # the task's publish, once the request committed
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    provider_close_task(_today().isoformat())  # what the import worker runs
    listed = admin.get("/api/v1/ops/provider-closes/").json()["results"]
    assert [(c["provider"], c["day"], c["status"]) for c in listed] == [
        (get_provider().name, _today().isoformat(), "done")
    ]
    future = admin.post("/api/v1/ops/provider-close/", {"date": "2999-01-01"}, format="json")
    assert (future.status_code, future.json()["code"]) == (400, "invalid")
    other = admin.post("/api/v1/ops/provider-close/", {"date": "2026-01-01", "provider": "nobody"}, format="json")
    assert other.status_code == 400
    seller = client_for(make_seller().user)
    assert seller.get("/api/v1/ops/provider-closes/").status_code == 403
    assert seller.post("/api/v1/ops/provider-funding/", {}, format="json").status_code == 403


def test_the_admin_site_adds_funding_and_never_changes_it(client):
    admin = make_admin()
    client.force_login(admin)
    added = client.post(
        "/admin/ledger/providerfunding/add/",
        {
            "provider": "sandbox",
            "amount": 500,
            "currency": "USD",
            "at_0": "2026-12-01",
            "at_1": "10:00:00",
            "reference": "w-9",
        },
    )
    assert added.status_code == 302, added.content[:2000]
    funding = ProviderFunding.objects.get(reference="w-9")
    assert (funding.amount, funding.recorded_by) == (500, admin)
    assert client.post(f"/admin/ledger/providerfunding/{funding.pk}/change/", {"amount": 1}).status_code == 403
    assert client.post(f"/admin/ledger/providerfunding/{funding.pk}/delete/", {"post": "yes"}).status_code == 403
