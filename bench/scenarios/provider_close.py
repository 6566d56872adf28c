"""Scenario `provider_close` (docs/performance.md): the daily close over `close_charges` charges
sent yesterday (`seed.long_history`: succeeded, each with its hold) against a sandbox of its own
holding one completed transaction per charge, one in a thousand for another amount; the close must
count exactly those."""

from __future__ import annotations

import time
from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from bench import seed
from bench.scenarios import Context, ScenarioFailed, check_settled
from bench.stack import reset_ledger
from devstack.processes import free_port
from devstack.sandbox import SandboxProcess


def run(ctx: Context) -> dict:
    from ledger.fulfilment.identity import external_id_prefix
    from ledger.provider_account.close import close_day, day_bounds
    from provider_sandbox.store import Store, timestamp_text
    from providers import get_provider

    n, prefix, day = ctx.sizes.close_charges, external_id_prefix(), (timezone.now() - timedelta(days=1)).date()
    reset_ledger()
    [seller_id], (start, end) = seed.make_sellers(1, prefix="close"), day_bounds(day)
    began = time.monotonic()
    charge_ids = seed.long_history(seller_id, entries=n + 1, start=start, end=end, external_ids=prefix)["charge_ids"]
    store_path = ctx.stack.log_dir / "close-sandbox.db"
    store, created = Store(str(store_path), balance=10**12), timestamp_text(start + (end - start) / 2)
    with store.transaction():
        store.db.executemany(
            "INSERT INTO transactions (external_id, msisdn, amount, status, created_at, completed_at)"
            " VALUES (?, ?, ?, 'COMPLETED', ?, ?)",
            ((f"{prefix}{c}", seed.PHONE, 1001 if k % 1000 == 0 else 1000, created, created)
             for k, c in enumerate(charge_ids, 1)),
        )  # fmt: skip
    store.close()
    result: dict = {"charges": n, "seed_seconds": round(time.monotonic() - began, 1)}
    sandbox = SandboxProcess(ctx.stack.log_dir, port=free_port(8500, 8599), name="close-sandbox", db=store_path).start()
    try:
        with override_settings(PROVIDER_KIND="sandbox", PROVIDER_URL=sandbox.url):
            get_provider.cache_clear()
            began = time.monotonic()
            close = close_day(get_provider(), day)
            result["seconds"] = round(time.monotonic() - began, 2)
    finally:
        get_provider.cache_clear()
        sandbox.stop()
    result["charges_per_s"] = round(n / result["seconds"])
    counts = ("charges", "transactions", "matched", "mismatched", "missing_at_provider", "missing_here")
    result.update(found := {name: getattr(close, name) for name in counts})
    expected = dict(zip(counts, (n, n, n - n // 1000, n // 1000, 0, 0), strict=True))
    if close.status != "done" or found != expected:
        raise ScenarioFailed(f"provider close {close.status}: {found}, expected {expected}", partial=result)
    check_settled("provider close", "seller_id = %s", [seller_id], charges=n)
    return result | {"audit": "ok"}
