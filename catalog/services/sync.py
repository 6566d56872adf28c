"""`catalog_sync`: the provider's catalog into ours, without rewriting history.

The whole catalog is read from the provider first (nothing is written while pages arrive: a sync
that fails half-way changes nothing and withdraws nothing), then applied in one transaction under
an advisory lock (two syncs, e.g. beat's and a `manage.py sync_catalog`, take turns), with set-based
statements: a few queries per kind of object, whatever the catalog's size.

- A product seen for the first time: a Product and its first ProductVersion.
- A product whose terms (amounts, cost, face value, kind, description ...) changed: a new
  ProductVersion from now; the old one stays, so what was quoted or sold keeps pointing at it.
- A product or operator the provider no longer lists: `withdrawn_at` set (never deleted); it is
  cleared if the provider lists it again. A listed product this cannot sell (unreadable, or its
  cost in another currency than PLATFORM_CURRENCY) counts as skipped and is withdrawn too.
- Numbering prefixes are the provider's current ones (nothing refers to a prefix).
- `enabled` is the admins' switch: a sync never changes it."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import Country, NumberingPrefix, Operator, Product, ProductVersion
from providers.base import CatalogOperator, CatalogProduct, Provider, UnreadableProduct

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the sync (any constant the project uses for nothing else).
SYNC_LOCK_KEY = 0x63617461  # "cata"
VERSION_FIELDS = (
    "kind", "service", "provider_type", "destination_currency", "amount", "min_amount", "max_amount", "amount_step",
    "cost", "cost_rate", "retail_price", "retail_rate", "description", "validity", "benefits",
)  # fmt: skip


@dataclass
class SyncSummary:
    provider: str
    products_seen: int = 0
    products_added: int = 0
    products_changed: int = 0
    products_withdrawn: int = 0
    products_restored: int = 0
    products_unchanged: int = 0
    products_skipped: int = 0
    operators_added: int = 0
    operators_changed: int = 0
    operators_withdrawn: int = 0
    operators_restored: int = 0
    prefixes_added: int = 0
    prefixes_removed: int = 0
    skipped: list[str] = field(default_factory=list)  # "<id>: <reason>", the first 100

    def as_dict(self) -> dict:
        return asdict(self)


def _fingerprint(values: dict) -> str:
    def plain(value):
        return str(value) if isinstance(value, Decimal) else value

    text = json.dumps({key: plain(values[key]) for key in VERSION_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _version_values(product: CatalogProduct) -> dict:
    values = {key: getattr(product, key) for key in VERSION_FIELDS}
    values["benefits"] = list(product.benefits)
    return values


def _fetch(provider: Provider, progress: Callable[[int], None] | None, summary: SyncSummary):
    countries = {country.iso_code: country for country in provider.countries()}
    operators: dict[str, CatalogOperator] = {op.provider_operator_id: op for op in provider.operators()}
    products: dict[str, CatalogProduct] = {}
    for item in provider.products():
        summary.products_seen += 1
        if progress:
            progress(1)
        if isinstance(item, UnreadableProduct):
            _skip(summary, item.provider_product_id, item.reason)
        elif item.cost_currency != settings.PLATFORM_CURRENCY:
            _skip(summary, item.provider_product_id, f"cost in {item.cost_currency}, not {settings.PLATFORM_CURRENCY}")
        else:
            products[item.provider_product_id] = item
            operators.setdefault(item.operator.provider_operator_id, item.operator)
    return countries, operators, products


def _skip(summary: SyncSummary, product_id: str, reason: str) -> None:
    summary.products_skipped += 1
    if len(summary.skipped) < 100:
        summary.skipped.append(f"{product_id}: {reason}")


def catalog_sync(*, provider: Provider, progress: Callable[[int], None] | None = None) -> SyncSummary:
    summary = SyncSummary(provider=provider.name)
    countries, operators, products = _fetch(provider, progress, summary)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SYNC_LOCK_KEY])
        now = timezone.now()
        country_ids = _sync_countries(countries, operators)
        operator_ids = _sync_operators(provider.name, operators, country_ids, now, summary)
        _sync_prefixes(operators, operator_ids, summary)
        _sync_products(provider.name, products, operator_ids, now, summary)
    changed = summary.products_seen != summary.products_unchanged or any(
        (summary.operators_added, summary.operators_changed, summary.operators_withdrawn, summary.operators_restored)
    )
    changed = changed or summary.prefixes_added or summary.prefixes_removed or summary.products_withdrawn
    # Periodic: a line at INFO only when the sync changed something (docs/operations.md, "Logs").
    logger.log(
        logging.INFO if changed else logging.DEBUG,
        "catalog synced",
        extra={"event": "catalog.synced", **summary.as_dict()},
    )
    return summary


def _sync_countries(countries: dict, operators: dict[str, CatalogOperator]) -> dict[str, int]:
    names = {op.country_iso_code: op.country_name for op in operators.values()}
    names.update({iso: country.name for iso, country in countries.items()})
    rows = [
        Country(iso_code=iso, name=name, dialing_code=(countries[iso].calling_code or "") if iso in countries else "")
        for iso, name in names.items()
    ]
    existing = {c.iso_code: c for c in Country.objects.filter(iso_code__in=names)}
    for row in rows:
        # A calling code the provider does not state keeps the one an admin or an earlier sync set.
        if not row.dialing_code and row.iso_code in existing:
            row.dialing_code = existing[row.iso_code].dialing_code
    Country.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["iso_code"], update_fields=["name", "dialing_code"]
    )
    return dict(Country.objects.filter(iso_code__in=names).values_list("iso_code", "id"))


def _sync_operators(
    provider: str, operators: dict[str, CatalogOperator], country_ids: dict[str, int], now, summary: SyncSummary
) -> dict[str, int]:
    existing = {op.provider_operator_id: op for op in Operator.objects.filter(provider=provider)}
    added, changed = [], []
    for key, seen in operators.items():
        country_id = country_ids[seen.country_iso_code]
        row = existing.get(key)
        if row is None:
            added.append(Operator(provider=provider, provider_operator_id=key, name=seen.name, country_id=country_id))
            continue
        if row.withdrawn_at is not None:
            summary.operators_restored += 1
        elif (row.name, row.country_id) != (seen.name, country_id):
            summary.operators_changed += 1
        else:
            continue
        row.name, row.country_id, row.withdrawn_at, row.updated_at = seen.name, country_id, None, now
        changed.append(row)
    Operator.objects.bulk_create(added)
    Operator.objects.bulk_update(changed, ["name", "country", "withdrawn_at", "updated_at"])
    summary.operators_added = len(added)
    summary.operators_withdrawn = (
        Operator.objects.filter(provider=provider, withdrawn_at__isnull=True)
        .exclude(provider_operator_id__in=list(operators))
        .update(withdrawn_at=now, updated_at=now)
    )
    return dict(Operator.objects.filter(provider=provider).values_list("provider_operator_id", "id"))


def _sync_prefixes(operators: dict[str, CatalogOperator], operator_ids: dict[str, int], summary: SyncSummary) -> None:
    """Prefixes of the operators the provider publishes them for; an operator listed without any
    keeps its own (loaded by an admin, or by an earlier sync)."""
    wanted = {(operator_ids[key], prefix) for key, op in operators.items() for prefix in op.prefixes}
    published = {operator_ids[key] for key, op in operators.items() if op.prefixes}
    have = {
        (operator_id, prefix): pk
        for pk, operator_id, prefix in NumberingPrefix.objects.filter(operator_id__in=published).values_list(
            "pk", "operator_id", "prefix"
        )
    }
    gone = set(have) - wanted
    NumberingPrefix.objects.filter(pk__in=[have[key] for key in gone]).delete()
    NumberingPrefix.objects.bulk_create(
        [NumberingPrefix(operator_id=o, prefix=p) for o, p in wanted - set(have)], ignore_conflicts=True
    )
    summary.prefixes_added, summary.prefixes_removed = len(wanted - set(have)), len(gone)


def _sync_products(
    provider: str, products: dict[str, CatalogProduct], operator_ids: dict[str, int], now, summary: SyncSummary
) -> None:
    existing = {
        row["provider_product_id"]: row
        for row in Product.objects.filter(provider=provider).values(
            "id", "provider_product_id", "name", "operator_id", "withdrawn_at", "current_version__fingerprint"
        )
    }
    new_products, touched = [], []  # touched: (product id, CatalogProduct, needs a new version)
    for key, seen in products.items():
        operator_id = operator_ids[seen.operator.provider_operator_id]
        row = existing.get(key)
        if row is None:
            new_products.append(
                Product(provider=provider, provider_product_id=key, name=seen.name, operator_id=operator_id)
            )
            continue
        fingerprint = _fingerprint(_version_values(seen))
        versioned = fingerprint != row["current_version__fingerprint"]
        moved = (row["name"], row["operator_id"]) != (seen.name, operator_id)
        if row["withdrawn_at"] is not None:
            summary.products_restored += 1
        elif versioned or moved:
            summary.products_changed += 1
        else:
            summary.products_unchanged += 1
            continue
        touched.append((row["id"], seen, operator_id, versioned))
    created = Product.objects.bulk_create(new_products)
    summary.products_added = len(created)
    versions = [(p.pk, products[p.provider_product_id]) for p in created]
    versions += [(pk, seen) for pk, seen, _, versioned in touched if versioned]
    rows = []
    for product_id, seen in versions:
        values = _version_values(seen)
        rows.append(
            ProductVersion(product_id=product_id, fingerprint=_fingerprint(values), effective_from=now, **values)
        )
    ProductVersion.objects.bulk_create(rows, batch_size=2000)
    # Set-based, one statement each (Django's bulk_update is a CASE per row: quadratic).
    with connection.cursor() as cursor:
        if touched:
            cursor.execute(
                """
                UPDATE catalog_product AS p
                   SET name = t.name, operator_id = t.operator_id, withdrawn_at = NULL, updated_at = %s
                  FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS t(id, name, operator_id)
                 WHERE p.id = t.id
                """,
                [now, [t[0] for t in touched], [t[1].name for t in touched], [t[2] for t in touched]],
            )
        if rows:
            cursor.execute(
                """
                UPDATE catalog_product AS p SET current_version_id = v.id
                  FROM catalog_productversion AS v
                 WHERE v.product_id = p.id AND v.effective_from = %s AND p.provider = %s
                """,
                [now, provider],
            )
    summary.products_withdrawn = (
        Product.objects.filter(provider=provider, withdrawn_at__isnull=True)
        .exclude(provider_product_id__in=list(products))
        .update(withdrawn_at=now, updated_at=now)
    )
