"""A provider catalog of `catalog_products` synced end to end: the sandbox serving DT One DVS's
pages of 100 (5 ms each), the DT One adapter reading them, `catalog_sync` writing them. Three syncs:
the first (all added), a repeat (nothing changed), one after 10 % repriced and 5 % withdrawn; each
must count exactly those."""

from __future__ import annotations

import copy
import json
import time

from bench.scenarios import Context, ScenarioFailed
from bench.stack import reset_ledger
from provider_sandbox.catalog import SHIPPED

LATENCY_MS = 5.0


def synthetic_catalog(size: int) -> dict:
    """The shipped catalog's operators with `size` distinct products made from its own."""
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
    """Every tenth product's cost raised, every twentieth (from the eighth) withdrawn."""
    result = copy.deepcopy(catalog)
    products = result["products"]
    for n, product in enumerate(products):
        if n % 10 == 0 and product["type"] == "FIXED_VALUE_RECHARGE":
            product["prices"]["wholesale"]["amount"] = round(product["prices"]["wholesale"]["amount"] + 0.01, 2)
        elif n % 10 == 0:
            product["rates"]["wholesale"] = round(product["rates"]["wholesale"] * 1.01, 6)
    result["products"] = [p for n, p in enumerate(products) if n % 20 != 7]
    return result


def run(ctx: Context) -> dict:
    from catalog.services.sync import catalog_sync
    from providers.dtone import DTOneProvider

    n, sandbox = ctx.sizes.catalog_products, ctx.stack.provider
    reset_ledger(house_catalog=False)  # the first sync finds an empty catalog
    catalog, result = synthetic_catalog(n), {"products": n, "provider_latency_ms": LATENCY_MS}
    provider = DTOneProvider(base_url=sandbox.url, name="bench", timeout=(2.0, 30.0))
    # What each sync must find: (catalog served, added, changed, withdrawn).
    syncs = {
        "first": (catalog, n, 0, 0),
        "repeat": (None, 0, 0, 0),
        "changed": (changed(catalog), 0, len(range(0, n, 10)), len(range(7, n, 20))),
    }
    sandbox.configure(latency_ms=LATENCY_MS)
    try:
        for name, (served, *expected) in syncs.items():
            if served is not None:
                sandbox.session.post(f"{sandbox.url}/_sandbox/catalog", json=served, timeout=60).raise_for_status()
            started = time.perf_counter()
            summary = catalog_sync(provider=provider)
            found = {key: getattr(summary, f"products_{key}") for key in ("added", "changed", "withdrawn", "skipped")}
            result[name] = {"seconds": round(time.perf_counter() - started, 2), "seen": summary.products_seen, **found}
            if list(found.values()) != [*expected, 0]:
                message = f"catalog sync, {name}: {found}, expected added, changed, withdrawn {expected}"
                raise ScenarioFailed(f"{message}: {summary.skipped[:3]}", partial=result)
    finally:
        sandbox.session.post(f"{sandbox.url}/_sandbox/catalog", json={"reset": True}, timeout=60).raise_for_status()
        sandbox.configure(latency_ms=ctx.provider_latency_ms)
    return result
