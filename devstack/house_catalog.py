"""A small domestic catalog for the tests and the benchmark: one operator per country their
numbers belong to, each selling one ranged airtime product whose destination currency is the
platform currency, at face value (no price rule) and costing 97 % of it. So the amount a test asks
for is the amount the seller is held, as for a domestic reseller, while every charge still names
an operator, a product version, a price and a cost through the catalog's one path
(`catalog.sales`).

The catalog the development stack sells is the sandbox provider's, synced when it starts
(`manage.py sync_catalog`); this one is loaded with `load_house_catalog()`."""

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import Country, NumberingPrefix, Operator, Product, ProductVersion

PROVIDER = "house"
COST_RATE = Decimal("0.97")

# (country iso, name, calling code, operator name, numbering prefixes): the longest prefix wins.
OPERATORS = [
    ("IRN", "Iran", "98", "House MCI", ["989"]),
    (
        "IRN",
        "Iran",
        "98",
        "House Irancell",
        ["98901", "98902", "98903", "98905", "98930", "98933", "98935", "98936", "98937", "98938", "98939", "98941"],
    ),  # fmt: skip
    ("NGA", "Nigeria", "234", "House MTN Nigeria", ["234"]),
    ("KEN", "Kenya", "254", "House Safaricom", ["254"]),
    ("GBR", "United Kingdom", "44", "House UK Mobile", ["447"]),
]


def house_catalog_loaded() -> bool:
    return Operator.objects.filter(provider=PROVIDER).exists()


@transaction.atomic
def load_house_catalog() -> None:
    """Idempotent: what exists already is kept."""
    now = timezone.now()
    for iso, country_name, code, operator_name, prefixes in OPERATORS:
        country, _ = Country.objects.get_or_create(iso_code=iso, defaults={"name": country_name, "dialing_code": code})
        operator, _ = Operator.objects.get_or_create(
            provider=PROVIDER, provider_operator_id=operator_name, defaults={"country": country, "name": operator_name}
        )
        NumberingPrefix.objects.bulk_create(
            [NumberingPrefix(operator=operator, prefix=prefix) for prefix in prefixes], ignore_conflicts=True
        )
        product, created = Product.objects.get_or_create(
            provider=PROVIDER,
            provider_product_id=f"{operator_name} airtime",
            defaults={"operator": operator, "name": f"{operator_name} airtime"},
        )
        if created or product.current_version is None:
            product.current_version = ProductVersion.objects.create(
                product=product,
                kind="ranged",
                service="airtime",
                provider_type="RANGED_VALUE_RECHARGE",
                destination_currency=settings.PLATFORM_CURRENCY,
                min_amount=1,
                max_amount=settings.LEDGER_MAX_AMOUNT,
                cost=0,
                cost_rate=COST_RATE,
                retail_rate=Decimal(1),
                description="Domestic airtime at face value",
                fingerprint="house",
                effective_from=now,
            )
            product.save(update_fields=["current_version"])
