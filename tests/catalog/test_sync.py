"""catalog_sync against the real sandbox: the shipped catalog arrives whole; a later sync versions
what changed and withdraws what vanished, never rewriting what a quote (later a charge) points at."""

import copy
from decimal import Decimal

import pytest
from django.core.management import call_command

from catalog.models import Country, NumberingPrefix, Operator, Product, ProductVersion
from catalog.services.sync import catalog_sync
from providers import get_provider

pytestmark = pytest.mark.django_db


def test_sync_creates_the_shipped_catalog(synced, shipped):
    assert synced.products_added == len(shipped["products"]) == Product.objects.count() >= 100
    assert synced.products_skipped == 0
    assert Country.objects.count() == len(shipped["countries"]) >= 5
    assert Operator.objects.count() == len(shipped["operators"])
    for country in Country.objects.all():
        assert country.operators.count() >= 2, country
        assert country.dialing_code
    assert NumberingPrefix.objects.count() == sum(len(op["numbering_prefixes"]) for op in shipped["operators"])
    assert ProductVersion.objects.count() == Product.objects.count()
    kinds = set(ProductVersion.objects.values_list("kind", "service").distinct())
    assert {("fixed", "airtime"), ("ranged", "airtime"), ("fixed", "data")} <= kinds

    # One product read field by field: DVS's decimals became integers of the smallest unit.
    source = next(p for p in shipped["products"] if p["type"] == "FIXED_VALUE_RECHARGE" and p["operator"]["id"] == 401)
    product = Product.objects.get(provider_product_id=str(source["id"]))
    version = product.current_version
    assert product.operator.name == "MTN Nigeria" and product.operator.country.iso_code == "NGA"
    assert version.kind == "fixed" and version.destination_currency == "NGN"
    assert version.amount == round(source["destination"]["amount"] * 100)
    assert version.cost == round(source["prices"]["wholesale"]["amount"] * 100)
    assert version.retail_price == round(source["prices"]["retail"]["amount"] * 100)
    ranged = ProductVersion.objects.filter(kind="ranged").first()
    assert ranged.min_amount < ranged.max_amount and ranged.cost_rate > 0 and ranged.retail_rate > 0

    again = catalog_sync(provider=get_provider())
    assert again.products_unchanged == again.products_seen and again.products_added == again.products_changed == 0
    assert ProductVersion.objects.count() == Product.objects.count()


def test_second_sync_versions_a_changed_price_and_withdraws_a_removed_product(synced, shipped, sandbox_catalog):
    data = copy.deepcopy(shipped)
    repriced, removed = data["products"][0], data["products"][1]
    ranged = next(p for p in data["products"] if p["type"] == "RANGED_VALUE_RECHARGE")
    repriced["prices"]["wholesale"]["amount"] = round(repriced["prices"]["wholesale"]["amount"] + 0.05, 2)
    ranged["rates"]["wholesale"] = ranged["rates"]["wholesale"] * 2
    data["products"].remove(removed)
    dropped_prefix = data["operators"][0]["numbering_prefixes"].pop()
    product = Product.objects.get(provider_product_id=str(repriced["id"]))
    old = product.current_version
    old_values = ProductVersion.objects.filter(pk=old.pk).values().get()
    removed_product = Product.objects.get(provider_product_id=str(removed["id"]))
    removed_product.enabled = False  # an admin's switch survives syncs
    removed_product.save(update_fields=["enabled"])
    sandbox_catalog.replace_catalog(data)

    summary = catalog_sync(provider=get_provider())

    assert (summary.products_changed, summary.products_withdrawn, summary.products_added) == (2, 1, 0)
    assert (summary.prefixes_removed, summary.prefixes_added) == (1, 0)
    assert not NumberingPrefix.objects.filter(prefix=dropped_prefix).exists()
    product.refresh_from_db()
    assert product.current_version_id != old.pk
    assert product.current_version.cost == old.cost + 5
    assert product.current_version.effective_from > old.effective_from
    assert ProductVersion.objects.filter(pk=old.pk).values().get() == old_values  # never rewritten
    ranged_product = Product.objects.get(provider_product_id=str(ranged["id"]))
    assert ranged_product.versions.count() == 2
    assert ranged_product.current_version.cost_rate < ranged_product.versions.order_by("id").first().cost_rate
    removed_product.refresh_from_db()
    assert removed_product.withdrawn_at is not None and removed_product.current_version_id is not None

    sandbox_catalog.replace_catalog(shipped)
    back = catalog_sync(provider=get_provider())
    assert back.products_restored == 1 and back.products_changed == 2 and back.prefixes_added == 1
    removed_product.refresh_from_db()
    assert removed_product.withdrawn_at is None and removed_product.enabled is False
    assert removed_product.versions.count() == 1  # listed again unchanged: no new version


def test_a_sync_that_cannot_read_the_provider_changes_nothing(synced, session_sandbox, settings):
    from providers.base import ProviderError

    session_sandbox.configure(down=True)
    try:
        with pytest.raises(ProviderError):
            catalog_sync(provider=get_provider())
    finally:
        session_sandbox.configure(down=False)
    assert not Product.objects.filter(withdrawn_at__isnull=False).exists()


def test_a_product_in_another_currency_than_the_platform_is_skipped(db, session_sandbox, settings):
    settings.PLATFORM_CURRENCY = "EUR"
    summary = catalog_sync(provider=get_provider())
    assert summary.products_added == 0 and summary.products_skipped == summary.products_seen
    assert "cost in USD, not EUR" in summary.skipped[0]


def test_sync_catalog_command_prints_what_changed(db, session_sandbox, capsys):
    call_command("sync_catalog", "--quiet-progress")
    out = capsys.readouterr().out
    assert "products: 117 added, 0 changed" in out
    assert "operators: 18 added" in out
    assert Decimal(0) < ProductVersion.objects.filter(kind="ranged").first().cost_rate
