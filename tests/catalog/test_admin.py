"""The admin site: admins switch products off and add price rules, checked against cost as the
API checks them; synced rows cannot be edited otherwise."""

import pytest

from catalog.models import PriceRule, Product
from catalog.services.prices import price_list_default
from tests.factories import make_admin

pytestmark = pytest.mark.django_db


def test_an_admin_switches_a_product_off_and_adds_only_rules_above_cost(client, synced):
    client.force_login(make_admin())
    product = Product.objects.select_related("current_version").filter(current_version__kind="fixed").first()
    assert client.get("/admin/catalog/product/").status_code == 200
    assert client.get(f"/admin/catalog/product/{product.pk}/change/").status_code == 200
    price_list = price_list_default()
    form = {
        "price_list": price_list.pk,
        "product": product.pk,
        "method": "discount",
        "basis_points": 9900,
        "effective_from_0": "2099-01-01",
        "effective_from_1": "00:00:00",
    }
    refused = client.post("/admin/catalog/pricerule/add/", form)
    assert refused.status_code == 200 and b"Below cost" in refused.content
    assert not PriceRule.objects.exists()
    accepted = client.post("/admin/catalog/pricerule/add/", {**form, "allow_below_cost": "on"})
    assert accepted.status_code == 302
    assert PriceRule.objects.get().allow_below_cost
    for page in ("operator", "productversion", "numberingprefix", "country", "quote", "pricelist", "pricerule"):
        assert client.get(f"/admin/catalog/{page}/").status_code == 200, page
