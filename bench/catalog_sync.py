"""How long a catalog sync of a large provider catalog takes, end to end: a sandbox process
serving N products (DVS pages of 100, over HTTP, with the sandbox's latency), the DT One adapter
reading every page, and `catalog_sync` writing them into PostgreSQL. Three syncs in a row: the
first (every product added), a repeat (nothing changed), and one after the provider changed the
cost of 10 % of its products and stopped listing 5 % (new versions and withdrawals).

    .venv/bin/python -m bench.catalog_sync [--products 10000] [--latency-ms 5]

Uses the database of `BENCH_DATABASE_URL` with `_catalog` appended (created and migrated if
needed; its catalog rows are emptied before the run). Prints seconds per sync; issue 21's target
is a sync of 10,000 products in under 30 s (docs/performance.md)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

from bench.stack import default_database_url
from devstack.postgres import create_database
from provider_sandbox.catalog import SHIPPED


def synthetic_catalog(size: int) -> dict:
    """The shipped catalog's operators, with `size` products made from its products: new ids,
    amounts and prices scaled so that each is a distinct product."""
    shipped = json.loads(SHIPPED.read_text())
    products = []
    for n in range(size):
        template = copy.deepcopy(shipped["products"][n % len(shipped["products"])])
        factor = 1 + n // len(shipped["products"])
        template["id"] = 1_000_000 + n
        template["name"] = f"{template['name']} x{factor}"
        if template["type"] == "FIXED_VALUE_RECHARGE":
            template["destination"]["amount"] *= factor
            for price in template["prices"].values():
                price["amount"] = round(price["amount"] * factor, 2)
        products.append(template)
    return {"countries": shipped["countries"], "operators": shipped["operators"], "products": products}


def changed(catalog: dict) -> dict:
    result = copy.deepcopy(catalog)
    products = result["products"]
    for n, product in enumerate(products):
        if n % 10 == 0 and product["type"] == "FIXED_VALUE_RECHARGE":
            product["prices"]["wholesale"]["amount"] = round(product["prices"]["wholesale"]["amount"] + 0.01, 2)
        elif n % 10 == 0:
            product["rates"]["wholesale"] = round(product["rates"]["wholesale"] * 1.01, 6)
    result["products"] = [p for n, p in enumerate(products) if n % 20 != 7]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog_sync", description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()

    database_url = f"{default_database_url()}_catalog"
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings.local", DATABASE_URL=database_url)
    create_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from django.db import connection

    from catalog.services.sync import catalog_sync
    from devstack.sandbox import SandboxProcess
    from providers.dtone import DTOneProvider

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE catalog_quote, catalog_pricerule, catalog_pricelist, catalog_numberlookup, "
            "catalog_numberingprefix, catalog_productversion, catalog_product, catalog_operator, catalog_country CASCADE"
        )
    catalog = synthetic_catalog(args.products)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "catalog.json"
        path.write_text(json.dumps(catalog))
        sandbox = SandboxProcess(Path(scratch), catalog=path, latency_ms=args.latency_ms).start()
        try:
            provider = DTOneProvider(base_url=sandbox.url, name="bench", timeout=(2.0, 30.0))
            runs = [("first sync (all added)", None), ("repeat (nothing changed)", None)]
            runs.append(("10 % repriced, 5 % withdrawn", changed(catalog)))
            for label, replacement in runs:
                if replacement is not None:
                    sandbox.session.post(
                        f"{sandbox.url}/_sandbox/catalog", json=replacement, timeout=60
                    ).raise_for_status()
                started = time.perf_counter()
                summary = catalog_sync(provider=provider)
                seconds = time.perf_counter() - started
                print(
                    f"{label:32} {seconds:6.2f} s  seen {summary.products_seen}, added {summary.products_added}, "
                    f"changed {summary.products_changed}, withdrawn {summary.products_withdrawn}, "
                    f"unchanged {summary.products_unchanged}"
                )
        finally:
            sandbox.stop()


if __name__ == "__main__":
    main()
