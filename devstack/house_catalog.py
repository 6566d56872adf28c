"""A small domestic catalog for the tests and the benchmark: one operator per country their
numbers belong to, each selling one ranged airtime product whose destination currency is the
platform currency, at face value (no price rule) and costing 97 % of it. So the amount a test asks
for is the amount the seller is held, as for a domestic reseller, while every charge still names
an operator, a product version, a price and a cost through the catalog's one path
(`catalog.sales`).

The catalog the development stack sells is the sandbox provider's, synced when it starts
(`manage.py sync_catalog`); this one is loaded with `load_house_catalog()`.

DT One's dialect names an integer product its account sells, so a provider speaking it delivers the
house catalog through `HOUSE_DVS_CATALOG` (served by the sandbox: `--catalog` or
`POST /_sandbox/catalog`), one ranged airtime product for every house number, at the same terms;
`route_house_products` routes each house product to it (the benchmark, the fault suite)."""

import base64
from collections.abc import Collection
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import Country, NumberingPrefix, Operator, Product, ProductRoute, ProductVersion
from devstack.sandbox import SANDBOX_CLIENT

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


# One ranged airtime product in US dollars (the platform currency by default), wholesale 97 % of
# the amount as COST_RATE says, whose operator's prefixes are every house operator's.
HOUSE_DVS_PRODUCT = "990001"
_USD = {"unit": "USD", "unit_type": "CURRENCY"}
_DVS_OPERATOR = {"id": 9901, "name": "House DVS", "country": {"iso_code": "IRN", "name": "Iran", "regions": None}}
HOUSE_DVS_CATALOG = {
    "countries": [{"iso_code": "IRN", "name": "Iran", "regions": None, "calling_code": "98"}],
    "operators": [_DVS_OPERATOR | {"regions": None, "numbering_prefixes": [p for *_, ps in OPERATORS for p in ps]}],
    "products": [
        {
            "id": int(HOUSE_DVS_PRODUCT),
            "name": "House airtime 0.01-1,000,000 USD",
            "description": "",
            "tags": [],
            "service": {"id": 1, "name": "Mobile", "subservice": {"id": 11, "name": "Airtime"}},
            "operator": _DVS_OPERATOR | {"regions": None},
            "regions": None,
            "type": "RANGED_VALUE_RECHARGE",
            "validity": None,
            "required_debit_party_identifier_fields": [],
            "required_credit_party_identifier_fields": [["mobile_number"]],
            "availability_zones": ["INTERNATIONAL"],
            "source": {"amount": {"min": 0.01, "max": 970000.0, "increment": 0.01}, **_USD},
            "destination": {"amount": {"min": 0.01, "max": 1000000.0, "increment": 0.01}, **_USD},
            "prices": {
                "wholesale": {"amount": {"min": 0.01, "max": 970000.0}, "fee": 0, **_USD},
                "retail": {"amount": {"min": 0.01, "max": 1000000.0}, "fee": 0, **_USD},
            },
            "rates": {"base": 1.0, "wholesale": 1.030927835052, "retail": 1.0},
            "benefits": [],
            "promotions": [],
        }
    ],
}


def sandbox_dvs_provider(sandbox_url: str, **more: str) -> dict:
    """The PROVIDERS entry of the sandbox at `sandbox_url` spoken to in DT One's dialect."""
    key, secret = SANDBOX_CLIENT
    return {"kind": "dvs", "url": f"{sandbox_url}/dvs/v1", "key": key, "secret": secret, **more}


def sandbox_dvs_headers() -> dict:
    """The basic authorization of `sandbox_dvs_provider`'s key and secret."""
    return {"Authorization": "Basic " + base64.b64encode(":".join(SANDBOX_CLIENT).encode()).decode()}


def house_dvs_request(msisdn: str, amount: int) -> dict:
    """The body (but its external_id) of the DVS transaction delivering `amount` (US cents) of house
    airtime to `msisdn`, as providers/dvs.py sends it: for measuring the sandbox alone."""
    return {
        "product_id": int(HOUSE_DVS_PRODUCT),
        "auto_confirm": True,
        "credit_party_identifier": {"mobile_number": msisdn},
        "calculation_mode": "DESTINATION_AMOUNT",
        "destination": {**_USD, "amount": amount / 100},
    }


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


def route_house_products(*providers: str, dvs: Collection[str] = ()) -> list[int]:
    """Route every house product to each provider in turn (priority in the order given), through a
    product of that provider's with the same terms: `HOUSE_DVS_PRODUCT` at those named in `dvs`,
    else the house product's own id (the sandbox's own dialect sends no product id). Replaces the
    house products' earlier routes; returns the new ones, enabled."""
    routes = []
    fields = [f.name for f in ProductVersion._meta.fields if f.name not in ("id", "product")]
    house = Product.objects.filter(provider=PROVIDER).select_related("current_version")
    ProductRoute.objects.filter(product__in=house).delete()
    for sold in house:
        for priority, name in enumerate(providers):
            served, _ = Product.objects.get_or_create(
                provider=name,
                provider_product_id=HOUSE_DVS_PRODUCT if name in dvs else sold.provider_product_id,
                defaults={"operator": sold.operator, "name": sold.name},
            )
            if served.current_version is None:
                terms = {field: getattr(sold.current_version, field) for field in fields}
                served.current_version = ProductVersion.objects.create(product=served, **terms)
                served.save(update_fields=["current_version"])
            routes.append(ProductRoute.objects.create(product=sold, served_by=served, priority=priority).pk)
    return routes
