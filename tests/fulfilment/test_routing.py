"""Routing with safe failover, against two real sandbox processes, one per provider (each its own
record and balance), both speaking DT One's dialect: a charge moves to the next provider only when
the first refused it before processing (insufficient balance, 503, its breaker open, the product
withdrawn there), under an external id the next one never saw; never after an unknown outcome,
never after a decline about the number. Each test ends with both providers' records equal to the
ledger and the audit clean. The workers' steps run in this process (tests/support.py)."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from catalog.models import Product, ProductRoute
from catalog.services.sync import catalog_sync
from devstack.sandbox import SandboxProcess
from ledger import charge_lifecycle as lifecycle
from ledger.fulfilment.gate import gate_for
from ledger.fulfilment.identity import external_id_prefix
from ledger.fulfilment.reconcile import look_up_open_charges, provider_window
from ledger.models import Account, Charge, ChargeRouteMove
from ledger.provider_account.close import close_day
from ledger.provider_account.floats import poll_float, provider_float_ok
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from providers import get_provider
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import SANDBOX_SECRET, assert_ledger_audit, sandbox_options, settle_through_provider

pytestmark = pytest.mark.django_db

PRODUCT = "10101"  # the sandbox catalog's MCI 500,000 IRR (fixed): 81 US cents wholesale
BALANCE = 10**9


@dataclass
class Pair:
    a: SandboxProcess
    b: SandboxProcess

    def sent_to(self, sandbox: SandboxProcess, charge: Charge) -> list[str]:
        return [t["status"] for t in sandbox.transactions() if t["external_id"] == charge.external_id]


def _clear_gates(*names: str) -> None:
    prefix = (django_settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("global_keyprefix", "")
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    for name in names:
        keys = list(client.scan_iter(f"{prefix}ledger:provider:{name}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def pair(settings, tmp_path):
    sandboxes = {}
    for name in ("a", "b"):
        sandboxes[name] = SandboxProcess(
            tmp_path, name=f"sandbox-{name}", db=tmp_path / f"{name}.db", balance=BALANCE, **sandbox_options()
        ).start()
    settings.PROVIDERS = {
        name: {
            "kind": "dvs",
            "url": f"{sandbox.url}/dvs/v1",
            "key": "sandbox",
            "secret": "sandbox-secret",
            "callback_secret": SANDBOX_SECRET,
        }
        for name, sandbox in sandboxes.items()
    }
    settings.PROVIDER_DEFAULT = "a"
    get_provider.cache_clear()
    gate_for.cache_clear()
    _clear_gates("a", "b")
    for name in ("a", "b"):
        catalog_sync(provider=get_provider(name))
    yield Pair(sandboxes["a"], sandboxes["b"])
    for sandbox in sandboxes.values():
        sandbox.stop()
    _clear_gates("a", "b")
    get_provider.cache_clear()
    gate_for.cache_clear()


def _routed(*providers: str) -> Product:
    """A's product, routed to each provider's own product in the order given."""
    sold = Product.objects.get(provider="a", provider_product_id=PRODUCT)
    for priority, provider in enumerate(providers):
        served = Product.objects.get(provider=provider, provider_product_id=PRODUCT)
        ProductRoute.objects.create(product=sold, served_by=served, priority=priority)
    return sold


def _funded(amount: int = 100_000):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    settle_seller(seller_id=seller.pk)
    return seller


def _sell(seller, product: Product, ending: str = "4567") -> Charge:
    return charge_submit(seller_id=seller.pk, phone_number=f"+98912123{ending}", product=product.pk)[0]


def _moves(charge: Charge) -> list[tuple[str, str | None, str, str]]:
    return list(
        ChargeRouteMove.objects.filter(charge=charge)
        .order_by("id")
        .values_list("provider", "external_id", "reason", "moved_to")
    )


def _records_equal_ledger(start) -> None:
    for name in ("a", "b"):
        window = provider_window(since=start, until=timezone.now() + timedelta(seconds=5), provider=name)
        assert window.clean, (name, window)


def _cost_at(provider: str) -> int:
    return Product.objects.get(provider=provider, provider_product_id=PRODUCT).current_version.cost


def test_insufficient_balance_at_the_first_moves_the_charge_to_the_second_under_a_new_id(pair):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    pair.a.set_balance(0)
    charge = _sell(seller, product)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.provider, charge.served_by.provider) == ("succeeded", "b", "b")
    assert charge.cost == _cost_at("b")
    [(refused_by, first_id, reason, moved_to)] = _moves(charge)
    assert (refused_by, reason, moved_to) == ("a", "insufficient_balance", "b")
    assert charge.external_id != first_id and charge.external_id == f"{first_id}-2"
    assert pair.sent_to(pair.b, charge) == ["COMPLETED"]
    assert pair.a.transactions() == []  # refused, nothing recorded there
    assert not provider_float_ok("a")
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_a_provider_that_refused_for_balance_is_skipped_until_its_polled_float_recovers(pair):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    pair.a.set_balance(0)
    first = _sell(seller, product)
    settle_through_provider(seller.pk)
    pair.a.set_balance(BALANCE)  # funded again, but routing has not seen it yet

    second = _sell(seller, product)
    settle_through_provider(seller.pk)
    second.refresh_from_db()
    assert (second.status, second.provider, _moves(second)) == ("succeeded", "b", [])  # never tried at A

    poll_float(get_provider("a"))  # the poll sees the balance back
    assert provider_float_ok("a")
    third = _sell(seller, product)
    settle_through_provider(seller.pk)
    third.refresh_from_db()
    assert (third.status, third.provider, _moves(third)) == ("succeeded", "a", [])
    assert [t["external_id"] for t in pair.a.transactions()] == [third.external_id]
    assert sorted(t["external_id"] for t in pair.b.transactions()) == sorted(
        Charge.objects.get(pk=c.pk).external_id for c in (first, second)
    )
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_a_503_before_processing_moves_the_charge_to_the_next_provider(pair):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    pair.a.configure(error_rate=1.0)
    charge = _sell(seller, product)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.provider) == ("succeeded", "b")
    assert [(p, reason, to) for p, _, reason, to in _moves(charge)] == [("a", "unavailable", "b")]
    assert pair.a.transactions() == [] and pair.sent_to(pair.b, charge) == ["COMPLETED"]
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_an_open_breaker_sends_new_charges_to_the_next_provider_and_moves_those_waiting(pair, settings):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    waiting = _sell(seller, product)
    settle_seller(seller_id=seller.pk)
    # Claimed for A, then put back certainly unsent (as after a 429 at its last route): waiting at A.
    [asked] = lifecycle.claim_for_sending(
        [waiting.pk], first_check_after=60, external_id_prefix=external_id_prefix(), provider="a"
    )
    assert lifecycle.unclaim([waiting.pk]) == 1
    gate = gate_for("a")
    for _ in range(settings.PROVIDER_BREAKER_FAILURES):
        gate.record_failure()
    assert gate.breaker_state() == "open"
    charge = _sell(seller, product)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.provider, _moves(charge)) == ("succeeded", "b", [])  # A never asked
    waiting.refresh_from_db()
    assert (waiting.status, waiting.provider) == ("succeeded", "b")
    assert _moves(waiting) == [("a", asked[1], "unavailable", "b")]
    assert waiting.external_id == f"{asked[1]}-2"
    assert pair.a.transactions() == []
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_a_product_withdrawn_at_the_first_moves_the_charge(pair):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    catalog = pair.a.session.get(f"{pair.a.url}/_sandbox/catalog", timeout=5).json()
    catalog["products"] = [p for p in catalog["products"] if str(p["id"]) != PRODUCT]
    pair.a.session.post(f"{pair.a.url}/_sandbox/catalog", json=catalog, timeout=5).raise_for_status()
    charge = _sell(seller, product)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.provider) == ("succeeded", "b")
    assert [(p, reason, to) for p, _, reason, to in _moves(charge)] == [("a", "product_unavailable", "b")]
    assert provider_float_ok("a")  # a withdrawn product says nothing about our money there
    assert pair.a.transactions() == [] and pair.sent_to(pair.b, charge) == ["COMPLETED"]
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_an_unknown_outcome_never_moves_it_is_sent_again_under_the_same_id_to_the_same_provider(pair):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    charge = _sell(seller, product, ending="9904")  # hangs past our read timeout, nothing recorded

    settle_through_provider(seller.pk)
    charge.refresh_from_db()
    assert (charge.stage, charge.provider, charge.sends) == ("unknown", "a", 1)
    first_id = charge.external_id

    pair.a.configure(down=True)  # the resend is refused before processing: still no move
    Charge.objects.filter(pk=charge.pk).update(next_check_at=timezone.now())
    look_up_open_charges()
    charge.refresh_from_db()
    assert (charge.stage, charge.provider, charge.external_id) == ("unknown", "a", first_id)

    pair.a.configure(down=False)
    Charge.objects.filter(pk=charge.pk).update(next_check_at=timezone.now())
    run = look_up_open_charges()  # A has no record: sent again there, under the same id
    charge.refresh_from_db()
    assert run.resent == 1
    assert (charge.provider, charge.external_id, charge.sends) == ("a", first_id, 2)
    assert _moves(charge) == []
    assert pair.b.transactions() == []
    assert Account.objects.get(seller=seller).held == charge.amount  # held, never released blindly
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_a_refusal_a_lookup_finds_never_moves_the_charge(pair):
    """Accepted, pending, then REJECTED for our balance there: only a send's own answer moves a
    charge, so this one fails with the refusal's code at the provider it was sent to."""
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    charge = _sell(seller, product, ending="9905")  # SUBMITTED at A, completed later
    settle_through_provider(seller.pk)
    charge.refresh_from_db()
    assert (charge.stage, charge.provider, charge.outcome) == ("submitted", "a", None)
    pair.a.force_status(charge.external_id, "REJECTED", status_detail="REJECTED-INSUFFICIENT-BALANCE")

    Charge.objects.filter(pk=charge.pk).update(next_check_at=timezone.now())
    look_up_open_charges()
    settle_seller(seller_id=seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.failure_code, charge.provider) == ("failed", "provider_insufficient_balance", "a")
    assert _moves(charge) == [] and pair.b.transactions() == []
    assert Account.objects.get(seller=seller).held == 0
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


@pytest.mark.parametrize(("ending", "code"), [("9901", "invalid_number"), ("9902", "operator_declined")])
def test_a_decline_about_the_number_or_the_operator_never_moves(pair, ending, code):
    start = timezone.now()
    product = _routed("a", "b")
    seller = _funded()
    charge = _sell(seller, product, ending=ending)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.failure_code, charge.provider, _moves(charge)) == ("failed", code, "a", [])
    assert pair.b.transactions() == []
    assert Account.objects.get(seller=seller).held == 0
    _records_equal_ledger(start)
    assert_ledger_audit(seller.pk)


def test_when_every_route_refuses_the_charge_fails_with_the_last_refusal(pair):
    product = _routed("a", "b")
    seller = _funded()
    pair.a.set_balance(0)
    pair.b.set_balance(0)
    charge = _sell(seller, product)

    settle_through_provider(seller.pk)

    charge.refresh_from_db()
    assert (charge.status, charge.failure_code, charge.provider) == ("failed", "provider_insufficient_balance", "b")
    assert [(p, reason, to) for p, _, reason, to in _moves(charge)] == [("a", "insufficient_balance", "b")]
    assert not provider_float_ok("a") and not provider_float_ok("b")
    assert_ledger_audit(seller.pk)


def test_the_daily_close_per_provider_with_charges_routed_to_both(pair):
    product = _routed("a", "b")
    seller = _funded()
    poll_float(get_provider("a"))
    poll_float(get_provider("b"))
    at_a = [_sell(seller, product) for _ in range(3)]
    settle_through_provider(seller.pk)
    pair.a.set_balance(0)  # the next ones move to B (the first after a refusal, then skipping A)
    at_b = [_sell(seller, product) for _ in range(2)]
    settle_through_provider(seller.pk)
    poll_float(get_provider("a"))
    poll_float(get_provider("b"))

    today = timezone.now().date()
    close_a, close_b = close_day(get_provider("a"), today), close_day(get_provider("b"), today)

    assert {Charge.objects.get(pk=c.pk).provider for c in at_a} == {"a"}
    assert {Charge.objects.get(pk=c.pk).provider for c in at_b} == {"b"}
    assert (close_a.charges, close_a.matched, close_a.missing_here, close_a.missing_at_provider) == (3, 3, 0, 0)
    assert (close_b.charges, close_b.matched, close_b.missing_here, close_b.missing_at_provider) == (2, 2, 0, 0)
    assert close_b.delivered_cost == 2 * _cost_at("b")
    assert close_b.balanced is True
    assert_ledger_audit(seller.pk)
