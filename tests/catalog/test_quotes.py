"""Quotes: a locked price for a number and product (and amount, ranged) for QUOTE_TTL; another
seller's is not found, an expired or used one is refused; used at most once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Operator, Product, Quote
from catalog.services.prices import price_list_default, price_rule_create
from ledger.models import Charge
from tests.factories import client_for, make_seller

pytestmark = pytest.mark.django_db
NUMBER = "+254712345678"  # Safaricom


@pytest.fixture
def safaricom(synced):
    return Operator.objects.get(name="Safaricom")


def _fixed(operator):
    return (
        Product.objects.filter(operator=operator, current_version__kind="fixed")
        .select_related("current_version")
        .first()
    )


def _ranged(operator):
    return (
        Product.objects.filter(operator=operator, current_version__kind="ranged")
        .select_related("current_version")
        .first()
    )


def test_quote_lifecycle(safaricom, settings, django_capture_on_commit_callbacks):
    settings.QUOTE_TTL = 60
    seller = make_seller()
    product = _fixed(safaricom)
    client = client_for(seller.user)
    with django_capture_on_commit_callbacks() as callbacks:
        answer = client.post("/api/v1/quotes/", {"phone_number": NUMBER, "product": product.pk}, format="json")
    assert answer.status_code == 201, answer.json()
    assert len(callbacks) == 1  # the provider's lookup of the number, for next time
    body = answer.json()
    assert body["price"] == product.current_version.retail_price and body["currency"] == "USD"
    assert body["destination_amount"] == product.current_version.amount and body["used"] is False
    assert body["product_version"] == product.current_version_id
    assert client.get(f"/api/v1/quotes/{body['id']}/").json() == body

    # A price change after the quote leaves the quote's price alone.
    price_rule_create(price_list=price_list_default(), product=product, method="markup", basis_points=2000)
    assert Quote.objects.get(pk=body["id"]).price == body["price"]

    # Another seller: not found, in the API and for a charge.
    other = client_for(make_seller().user)
    assert other.get(f"/api/v1/quotes/{body['id']}/").status_code == 404
    refused = other.post("/api/v1/charges/", {"quote": body["id"]}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")

    # Used at most once: the charge sells the quote's price; a second charge is refused.
    charge = client.post("/api/v1/charges/", {"quote": body["id"]}, format="json")
    assert charge.status_code == 202, charge.json()
    sold = Charge.objects.get(pk=charge.json()["id"])
    assert (sold.amount, sold.quote_id, sold.phone_number) == (body["price"], body["id"], NUMBER)
    again = client.post("/api/v1/charges/", {"quote": body["id"]}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "quote_used")
    assert client.get(f"/api/v1/quotes/{body['id']}/").json()["used"] is True


def test_an_expired_quote_is_refused(safaricom):
    seller = make_seller()
    answer = client_for(seller.user).post(
        "/api/v1/quotes/", {"phone_number": NUMBER, "product": _fixed(safaricom).pk}, format="json"
    )
    Quote.objects.filter(pk=answer.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = client_for(seller.user).post("/api/v1/charges/", {"quote": answer.json()["id"]}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "quote_expired")
    assert not Charge.objects.filter(seller=seller).exists()


def test_a_ranged_quote_needs_an_amount_within_the_range(safaricom):
    client = client_for(make_seller().user)
    version = _ranged(safaricom).current_version
    post = lambda amount: client.post(  # noqa: E731
        "/api/v1/quotes/", {"phone_number": NUMBER, "product": version.product_id, "amount": amount}, format="json"
    )
    assert post(version.min_amount).status_code == 201
    assert post(version.max_amount).status_code == 201
    assert version.amount_step == 100  # the sandbox's Kenyan ranged product: whole shillings
    for outside in (version.min_amount - 1, version.max_amount + 1, version.min_amount + 50):
        answer = post(outside)
        assert answer.status_code == 400 and answer.json()["code"] == "amount_not_offered"
    quote = post(version.min_amount).json()
    assert quote["price"] > 0


def test_a_product_of_another_operator_or_withdrawn_is_unavailable(safaricom):
    client = client_for(make_seller().user)
    airtel = _fixed(Operator.objects.get(name="Airtel Kenya"))
    answer = client.post("/api/v1/quotes/", {"phone_number": NUMBER, "product": airtel.pk}, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "product_unavailable"
    # The seller names the operator (a ported number): now it is on sale for it.
    answer = client.post(
        "/api/v1/quotes/", {"phone_number": NUMBER, "product": airtel.pk, "operator": airtel.operator_id}, format="json"
    )
    assert answer.status_code == 201
    Product.objects.filter(pk=airtel.pk).update(withdrawn_at=timezone.now())
    answer = client.post(
        "/api/v1/quotes/", {"phone_number": NUMBER, "product": airtel.pk, "operator": airtel.operator_id}, format="json"
    )
    assert answer.status_code == 400 and answer.json()["code"] == "product_unavailable"


def test_a_quote_keeps_the_version_it_was_priced_on_across_a_sync(safaricom, shipped, sandbox_catalog):
    import copy

    from catalog.services.sync import catalog_sync
    from providers import get_provider

    client = client_for(make_seller().user)
    product = _fixed(safaricom)
    before = client.post("/api/v1/quotes/", {"phone_number": NUMBER, "product": product.pk}, format="json").json()
    data = copy.deepcopy(shipped)
    source = next(p for p in data["products"] if str(p["id"]) == product.provider_product_id)
    source["prices"]["retail"]["amount"] = round(source["prices"]["retail"]["amount"] + 0.10, 2)
    sandbox_catalog.replace_catalog(data)
    catalog_sync(provider=get_provider())

    after = client.post("/api/v1/quotes/", {"phone_number": NUMBER, "product": product.pk}, format="json").json()
    assert after["product_version"] != before["product_version"] and after["price"] == before["price"] + 10
    quote = Quote.objects.select_related("product_version").get(pk=before["id"])
    assert quote.price == before["price"] and quote.product_version_id == before["product_version"]
    assert quote.product_version.retail_price == before["price"]  # the old terms, unchanged
