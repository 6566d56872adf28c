"""Charges name what they sell: a product of the number's operator at the seller's price, held
and debited as that price, with the provider's cost and the destination amount on record; quotes
lock a price once; a sync never rewrites what was sold; the margin report adds up to the ledger.
Against the sandbox's catalog as synced from the session's real sandbox process; the money tests
settle through it and end with the audit."""

import copy
import math
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db.models import Sum
from django.utils import timezone

from catalog.models import Operator, Product, ProductVersion, Quote
from catalog.services.prices import price_list_default, price_list_for_seller, price_rule_create
from catalog.services.sync import catalog_sync
from ledger.audit import audit_ledger
from ledger.models import Charge, Entry
from providers import get_provider
from tests.batches.helpers import csv_bytes, imported, results_rows
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db

MCI = "+989121234567"  # MCI: fixed airtime 500,000 ... 5,000,000 IRR and ranged 200,000-20,000,000 by 10,000
# Amounts are in the smallest unit of their currency: IRR, NGN and KES have two decimals (ISO 4217).
GLO = "+2348051234567"  # Glo (Nigeria); fixed denominations only once its ranged product is withdrawn
SAFARICOM = "+254712345678"


@pytest.fixture(autouse=True)
def _synced(synced):
    """The sandbox's catalog as shipped, synced."""


def _funded(credit: int = 1_000_000):
    seller = make_seller()
    request_and_approve(seller, credit, make_admin())
    return seller


def _charge(client, **body):
    return client.post("/api/v1/charges/", body, format="json")


def _product(operator_name: str, **version) -> Product:
    return (
        Product.objects.select_related("current_version")
        .filter(operator__name=operator_name, **{f"current_version__{k}": v for k, v in version.items()})
        .order_by("id")
        .first()
    )


def _account(seller) -> tuple[int, int]:
    seller.account.refresh_from_db()
    return seller.account.balance, seller.account.held


@pytest.fixture
def fixed_only_glo(sandbox_catalog, shipped):
    """The shipped catalog with Glo's ranged airtime withdrawn: Glo sells fixed denominations only."""
    data = copy.deepcopy(shipped)
    data["products"] = [
        p for p in data["products"] if not (p["operator"]["name"] == "Glo" and p["type"] == "RANGED_VALUE_RECHARGE")
    ]
    sandbox_catalog.replace_catalog(data)
    catalog_sync(provider=get_provider())
    return Operator.objects.get(name="Glo")


def test_a_fixed_denomination_sells_at_the_sellers_price_and_any_other_amount_is_refused(fixed_only_glo):
    seller = _funded()
    client = client_for(seller.user)
    n500 = _product("Glo", kind="fixed", amount=50_000)  # 500 NGN
    price_rule_create(
        price_list=price_list_for_seller(seller=seller), product=n500, method="discount", basis_points=500
    )
    face = n500.current_version.retail_price

    sold = _charge(client, phone_number=GLO, amount=50_000)
    assert sold.status_code == 202, sold.json()
    body = sold.json()
    expected_price = face - face * 500 // 10_000
    assert (body["amount"], body["product"], body["operator"]) == (expected_price, n500.pk, fixed_only_glo.pk)
    assert (body["destination_amount"], body["destination_currency"]) == (50_000, "NGN")
    assert "cost" not in body and "margin" not in body  # a seller never sees the platform's cost
    assert Charge.objects.get(pk=body["id"]).cost == n500.current_version.cost

    refused = _charge(client, phone_number=GLO, amount=50_001)
    assert refused.status_code == 400
    error = refused.json()
    assert error["code"] == "no_product" and error["ranges"] == []
    assert error["amounts"] == [10_000, 20_000, 50_000, 100_000] and error["destination_currency"] == "NGN"
    assert "10000, 20000, 50000 or 100000" in error["detail"]

    batch = imported(client, csv_bytes("phone_number,amount", f"{GLO},50000", f"{GLO},50001"))
    assert (batch["valid_rows"], batch["invalid_rows"]) == (1, 1)
    rows = results_rows(client, batch["id"])
    assert any("10000, 20000, 50000 or 100000" in cell for cell in rows[2]), rows
    assert Charge.objects.filter(seller=seller).count() == 2  # the POST's and the file's valid row: nothing for 50001

    settle_through_provider(seller.pk)
    assert _account(seller) == (1_000_000 - 2 * expected_price, 0)
    assert_ledger_audit(seller.pk)


def test_a_ranged_product_sells_at_its_bounds_and_refuses_one_unit_outside():
    seller = _funded()
    client = client_for(seller.user)
    ranged = _product("MCI (Hamrah-e Avval)", kind="ranged")
    version = ranged.current_version
    for amount in (version.min_amount, version.max_amount):
        sold = _charge(client, phone_number=MCI, product=ranged.pk, amount=amount)
        assert sold.status_code == 202, sold.json()
        assert sold.json()["amount"] == math.ceil(amount * version.retail_rate)  # face value, rounded up
    for amount in (version.min_amount - 1, version.max_amount + 1, version.min_amount + 1):  # off its steps
        refused = _charge(client, phone_number=MCI, product=ranged.pk, amount=amount)
        assert (refused.status_code, refused.json()["code"]) == (400, "amount_not_offered"), amount
    settle_through_provider(seller.pk)
    sold = Charge.objects.filter(seller=seller)
    assert sold.count() == 2 and set(sold.values_list("status", flat=True)) == {"succeeded"}
    assert set(sold.values_list("delivered_amount", flat=True)) == {version.min_amount, version.max_amount}
    assert_ledger_audit(seller.pk)


def test_a_quote_is_charged_at_its_price_after_a_price_change_and_refused_once_expired(settings):
    settings.QUOTE_TTL = 60
    seller = _funded()
    client = client_for(seller.user)
    product = _product("MCI (Hamrah-e Avval)", kind="fixed", amount=100_000_000)  # 1,000,000 IRR
    quote = client.post("/api/v1/quotes/", {"phone_number": MCI, "product": product.pk}, format="json").json()
    price_rule_create(price_list=price_list_default(), product=product, method="markup", basis_points=5000)
    repriced = _charge(client, phone_number=MCI, product=product.pk).json()["amount"]
    assert repriced > quote["price"]

    sold = _charge(client, quote=quote["id"])
    assert sold.status_code == 202, sold.json()
    assert (sold.json()["amount"], sold.json()["quote"]) == (quote["price"], quote["id"])

    late = client.post("/api/v1/quotes/", {"phone_number": MCI, "product": product.pk}, format="json").json()
    Quote.objects.filter(pk=late["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = _charge(client, quote=late["id"])
    assert (expired.status_code, expired.json()["code"]) == (409, "quote_expired")
    settle_through_provider(seller.pk)
    assert _account(seller) == (1_000_000 - quote["price"] - repriced, 0)
    assert_ledger_audit(seller.pk)


def test_a_sync_that_changes_a_price_and_withdraws_a_product_rewrites_nothing_sold(sandbox_catalog, shipped):
    seller = _funded()
    client = client_for(seller.user)
    changed = _product("Safaricom", kind="fixed", amount=10_000)  # 100 KES
    withdrawn = _product("Safaricom", kind="fixed", amount=25_000)
    in_flight = [_charge(client, phone_number=SAFARICOM, product=p.pk).json() for p in (changed, withdrawn)]
    old_price = in_flight[0]["amount"]

    data = copy.deepcopy(shipped)
    for p in data["products"]:
        if p["id"] == int(changed.provider_product_id):
            p["prices"]["retail"]["amount"] = round(p["prices"]["retail"]["amount"] * 2, 2)
    data["products"] = [p for p in data["products"] if p["id"] != int(withdrawn.provider_product_id)]
    sandbox_catalog.replace_catalog(data)
    summary = catalog_sync(provider=get_provider())
    assert (summary.products_changed, summary.products_withdrawn) == (1, 1)

    settle_through_provider(seller.pk)  # the charges in flight settle at what they were sold at
    sold = {c.pk: c for c in Charge.objects.filter(pk__in=[c["id"] for c in in_flight])}
    assert [sold[c["id"]].amount for c in in_flight] == [c["amount"] for c in in_flight]
    assert {c.status for c in sold.values()} == {"succeeded"}
    assert sold[in_flight[0]["id"]].product_version_id != Product.objects.get(pk=changed.pk).current_version_id
    assert ProductVersion.objects.filter(product=changed).count() == 2

    again = _charge(client, phone_number=SAFARICOM, product=changed.pk).json()
    assert again["amount"] > old_price  # the new retail price
    gone = _charge(client, phone_number=SAFARICOM, product=withdrawn.pk)
    assert (gone.status_code, gone.json()["code"]) == (400, "product_unavailable")
    assert_ledger_audit(seller.pk)


def test_two_sellers_are_each_held_their_own_price_and_the_margin_report_adds_up_to_the_ledger():
    cheap, dear = _funded(), _funded()
    product = _product("Safaricom", kind="fixed", amount=50_000)
    price_rule_create(
        price_list=price_list_for_seller(seller=cheap), product=product, method="discount", basis_points=200
    )
    price_rule_create(
        price_list=price_list_for_seller(seller=dear), product=product, method="markup", basis_points=3000
    )
    prices = {}
    for seller in (cheap, dear):
        client = client_for(seller.user)
        bodies = [_charge(client, phone_number=SAFARICOM, amount=50_000).json() for _ in range(3)]
        prices[seller.pk] = {b["amount"] for b in bodies}
        settle_through_provider(seller.pk)
    assert len(prices[cheap.pk]) == len(prices[dear.pk]) == 1 and prices[cheap.pk] != prices[dear.pk]
    assert _account(cheap)[0] == 1_000_000 - 3 * prices[cheap.pk].pop()
    assert _account(dear)[0] == 1_000_000 - 3 * prices[dear.pk].pop()

    staff = client_for(make_admin())
    window = {"from": (timezone.now() - timedelta(days=1)).date().isoformat(), "group_by": "seller"}
    report = staff.get("/api/v1/reports/margin/", window).json()
    sellers = {cheap.pk, dear.pk}
    debits = -Entry.objects.filter(seller__in=sellers, kind="charge", charge__status="succeeded").aggregate(
        s=Sum("amount")
    )["s"]
    costs = Charge.objects.filter(seller__in=sellers, status="succeeded").aggregate(s=Sum("cost"))["s"]
    rows = [r for r in report["rows"] if int(r["key"]) in sellers]
    assert sum(r["revenue"] for r in rows) == debits
    assert sum(r["margin"] for r in rows) == debits - costs
    assert {int(r["key"]): r["charges"] for r in rows} == {cheap.pk: 3, dear.pk: 3}

    csv_answer = staff.get("/api/v1/reports/margin/", window | {"format": "csv"})
    assert csv_answer["Content-Type"].startswith("text/csv")
    lines = csv_answer.content.decode().splitlines()
    assert lines[0] == "key,name,charges,revenue,cost,margin" and lines[-1].startswith("total,total,")
    seller_view = client_for(cheap.user).get("/api/v1/reports/margin/")
    assert seller_view.status_code == 403
    bad = staff.get("/api/v1/reports/margin/", {"from": "yesterday", "format": "csv"})
    assert (bad.status_code, bad["Content-Type"], bad.json()["code"]) == (400, "application/json", "invalid")
    assert_ledger_audit()


def test_a_named_operator_wins_over_the_numbering_prefix():
    seller = _funded()
    client = client_for(seller.user)
    irancell = Operator.objects.get(name="Irancell")
    by_prefix = _charge(client, phone_number=MCI, amount=50_000_000).json()
    named = _charge(client, phone_number=MCI, amount=50_000_000, operator=irancell.pk).json()
    assert by_prefix["operator"] == Operator.objects.get(name__startswith="MCI").pk
    assert named["operator"] == irancell.pk
    assert Product.objects.get(pk=named["product"]).operator_id == irancell.pk
    abroad = _charge(client, phone_number=SAFARICOM, amount=10_000, operator=irancell.pk)
    assert (abroad.status_code, abroad.json()["code"]) == (400, "operator_mismatch")
    nobody = _charge(client, phone_number="+447911123456", amount=10_000)  # no operator of ours serves it
    assert (nobody.status_code, nobody.json()["code"]) == (400, "no_operator")
    settle_through_provider(seller.pk)
    assert_ledger_audit(seller.pk)


def test_the_admin_site_charts_the_margin_per_day(client):
    seller = _funded()
    for _ in range(2):
        _charge(client_for(seller.user), phone_number=SAFARICOM, amount=50_000)
    settle_through_provider(seller.pk)
    sold = Charge.objects.filter(seller=seller, status="succeeded")
    margin = sum(c.amount - c.cost for c in sold)
    client.force_login(make_admin())

    listing = client.get("/admin/ledger/charge/")
    assert listing.status_code == 200 and b"/admin/ledger/charge/margin/" in listing.content
    page = client.get("/admin/ledger/charge/margin/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="margin-bar"') == 30  # a bar per day of the last 30, today's last
    today = timezone.now().date().isoformat()
    assert f"{today}: margin {margin} on 2 charges" in html
    client.force_login(seller.user)  # a seller has no admin site
    assert client.get("/admin/ledger/charge/margin/").status_code == 302


def test_the_audit_finds_a_quoted_charge_held_at_another_price_than_its_quote(settings):
    seller = _funded()
    client = client_for(seller.user)
    product = _product("Safaricom", kind="fixed", amount=10_000)
    quote = client.post("/api/v1/quotes/", {"phone_number": SAFARICOM, "product": product.pk}, format="json").json()
    charge = _charge(client, quote=quote["id"]).json()
    settle_through_provider(seller.pk)
    assert_ledger_audit(seller.pk)

    Quote.objects.filter(pk=quote["id"]).update(price=quote["price"] + 1)  # the price on record differs
    breaches = audit_ledger(seller_id=seller.pk)
    assert [(b.invariant, b.seller_id) for b in breaches] == [(5, seller.pk)]
    assert f"charge {charge['id']} is succeeded/done with a hold of -{quote['price']}" in breaches[0].message
    assert f"for quote {quote['id']} at {quote['price'] + 1}" in breaches[0].message
    with pytest.raises(CommandError, match="FAILED"):
        assert_ledger_audit(seller.pk)
