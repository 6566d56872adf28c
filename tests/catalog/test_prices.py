"""Price rules: discount off face value, markup over cost, per operator or product, a seller's own
list over the default, effective_from, and a price below cost refused unless allowed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.errors import BelowCostError
from catalog.models import Operator, Product
from catalog.selectors import PriceBook
from catalog.services.prices import price_list_default, price_list_for_seller, price_rule_create
from core.errors import DomainError
from tests.factories import client_for, make_admin, make_seller

pytestmark = pytest.mark.django_db


@pytest.fixture
def mtn(synced):
    return Operator.objects.get(name="MTN Nigeria")


@pytest.fixture
def product(mtn):
    """The fixed product with the widest margin between face value and cost."""
    found = max(
        Product.objects.filter(operator=mtn, current_version__kind="fixed").select_related("current_version"),
        key=lambda p: p.current_version.retail_price - p.current_version.cost,
    )
    assert found.current_version.retail_price - found.current_version.cost >= 5
    return found


def _price(seller, product, at=None):
    version = product.current_version
    return PriceBook(seller=seller, products=[product], at=at).price(product, version, version.amount)


def test_without_rules_the_price_is_the_face_value(product):
    price = _price(make_seller(), product)
    assert price.price == product.current_version.retail_price and price.rule is None


def test_discount_off_face_value_and_markup_over_cost(product, mtn):
    version = product.current_version
    seller = make_seller()
    price_rule_create(price_list=price_list_default(), operator=mtn, method="discount", basis_points=200)
    face = version.retail_price
    assert _price(seller, product).price == face - face * 200 // 10_000
    price_rule_create(price_list=price_list_default(), product=product, method="markup", basis_points=150)
    # A product rule beats an operator rule of the same list; the markup rounds up.
    assert _price(seller, product).price == version.cost + -(-version.cost * 150 // 10_000)


def test_a_sellers_own_list_overrides_the_default(product, mtn):
    favoured, other = make_seller(), make_seller()
    price_rule_create(price_list=price_list_default(), product=product, method="markup", basis_points=1000)
    price_rule_create(
        price_list=price_list_for_seller(seller=favoured), operator=mtn, method="markup", basis_points=100
    )
    cost = product.current_version.cost
    assert _price(other, product).price == cost + -(-cost * 1000 // 10_000)
    assert _price(favoured, product).price == cost + -(-cost * 100 // 10_000)


def test_a_rule_applies_from_its_effective_from(product):
    seller, now = make_seller(), timezone.now()
    later = now + timedelta(hours=1)
    price_rule_create(
        price_list=price_list_default(), product=product, method="markup", basis_points=500, effective_from=later
    )
    assert _price(seller, product, at=now).rule is None
    assert _price(seller, product, at=later + timedelta(seconds=1)).rule is not None
    with pytest.raises(DomainError):
        price_rule_create(
            price_list=price_list_default(), product=product, method="markup", basis_points=1,
            effective_from=now - timedelta(days=1),
        )  # fmt: skip


def test_a_price_below_cost_is_refused_unless_allowed(product):
    with pytest.raises(BelowCostError):
        price_rule_create(price_list=price_list_default(), product=product, method="discount", basis_points=9000)
    rule = price_rule_create(
        price_list=price_list_default(), product=product, method="discount", basis_points=9000, allow_below_cost=True
    )
    price = _price(make_seller(), product)
    assert price.rule == rule and price.price < price.cost


def test_the_api_refuses_a_below_cost_rule_with_a_stable_code(product):
    admin = client_for(make_admin())
    body = {"product": product.pk, "method": "discount", "basis_points": 9000}
    answer = admin.post("/api/v1/price-rules/", body, format="json")
    assert answer.status_code == 400 and answer.json()["code"] == "below_cost"
    answer = admin.post("/api/v1/price-rules/", {**body, "allow_below_cost": True}, format="json")
    assert answer.status_code == 201, answer.json()
    assert client_for(make_seller().user).post("/api/v1/price-rules/", body, format="json").status_code == 403


def test_sellers_see_their_price_never_the_cost_staff_see_the_cost(product, mtn):
    seller = make_seller()
    price_rule_create(price_list=price_list_for_seller(seller=seller), operator=mtn, method="markup", basis_points=300)
    rows = client_for(seller.user).get("/api/v1/products/", {"phone_number": "+2348031234567"}).json()["results"]
    row = next(r for r in rows if r["id"] == product.pk)
    cost = product.current_version.cost
    assert row["price"] == cost + -(-cost * 300 // 10_000) and "cost" not in row
    assert all(r["operator"] == mtn.pk for r in rows)
    ranged = next(r for r in rows if r["kind"] == "ranged")
    assert 0 < ranged["price_min"] < ranged["price_max"]
    staff_rows = (
        client_for(make_admin())
        .get("/api/v1/products/", {"phone_number": "+2348031234567", "seller": seller.pk})
        .json()["results"]
    )
    staff_row = next(r for r in staff_rows if r["id"] == product.pk)
    assert staff_row["cost"] == cost and staff_row["price"] == row["price"]


def test_an_admin_disables_a_product_and_an_operator(product, mtn):
    admin, seller = client_for(make_admin()), client_for(make_seller().user)
    assert admin.patch(f"/api/v1/products/{product.pk}/", {"enabled": False}, format="json").status_code == 200
    ids = {r["id"] for r in seller.get("/api/v1/products/", {"phone_number": "+2348031234567"}).json()["results"]}
    assert product.pk not in ids and ids
    assert seller.patch(f"/api/v1/products/{product.pk}/", {"enabled": True}, format="json").status_code == 403
    assert admin.patch(f"/api/v1/operators/{mtn.pk}/", {"enabled": False}, format="json").status_code == 200
    answer = seller.get("/api/v1/products/", {"phone_number": "+2348031234567"})
    assert answer.status_code == 400 and answer.json()["code"] == "no_operator"
