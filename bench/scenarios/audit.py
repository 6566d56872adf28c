"""The ledger audit's cost against the entries it reads, beat stopped (its periodic audit would
take the lock): at each ledger size, the full audit and the periodic one (a first run without
checkpoints, one with nothing new, one after each batch of new entries, one with a rolling full
pass of `audit_rolling` sellers). Entries are succeeded charges' holds written at bulk speed as
the settle writes them (`seed.append_charges`); every run must find the ledger clean."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench import seed
from bench.scenarios import Context, ScenarioFailed
from bench.stack import reset_ledger

FUND = 10**15
MILLISECOND = timedelta(milliseconds=1)


def run(ctx: Context) -> dict:
    sizes = ctx.sizes
    reset_ledger()
    sellers = seed.make_sellers(sizes.audit_sellers, prefix="audit")
    seed.fund(sellers, FUND)
    result: dict = {"sellers": len(sellers), "runs": []}
    entries = len(sellers)  # the funding deposits'

    def timed(what: str, full_sellers: int | None = None) -> None:
        """One audit: the full one (`full_sellers` None) or the periodic one, timed alone."""
        from ledger.audit import audit_ledger, audit_ledger_incremental

        with connection.cursor() as cur:  # what the full audit reads: every entry and every charge
            cur.execute("SELECT (SELECT count(*) FROM ledger_entry), (SELECT count(*) FROM ledger_charge)")
            read = cur.fetchone()
        started = time.perf_counter()
        if full_sellers is None:
            breaches = audit_ledger(limit=20)
        else:
            run = audit_ledger_incremental(full_sellers=full_sellers, limit=20)
            read, breaches = (
                (run.entries, run.charges),
                run.breaches or ["skipped: another audit held the lock"] * run.skipped,
            )
        seconds = round(time.perf_counter() - started, 3)
        row = {"ledger_entries": entries, "run": what, "entries_read": read[0], "charges_read": read[1]}
        result["runs"].append(row | {"seconds": seconds})
        if breaches:
            raise ScenarioFailed(f"audit, {what} at {entries:,} entries: {breaches[:5]}", partial=result)

    with ctx.stack.paused(ctx.stack.beat):
        for size in sizes.audit_sizes:
            entries += _append(sellers, size - entries)
            timed("full")
            with connection.cursor() as cur:
                cur.execute("TRUNCATE ledger_auditcheckpoint")
            timed("periodic, first run (no checkpoints)", 0)
            timed("periodic, nothing new", 0)
            for new in sizes.audit_new:
                entries += _append(sellers, new)
                timed(f"periodic, {new:,} new", 0)
            timed(f"periodic, rolling full pass of {sizes.audit_rolling}", sizes.audit_rolling)
    return result | {"audit": "ok"}  # every run found the ledger clean


def _append(sellers: list[int], entries: int) -> int:
    """About `entries` new entries spread evenly over the sellers, one settle each, in transactions
    of 200 sellers."""
    per_seller = max(1, entries // len(sellers))
    for first in range(0, len(sellers), 200):
        now = timezone.now()
        seed.append_charges(sellers[first : first + 200], per_seller, times=[now, now + MILLISECOND], batch=per_seller)
    return per_seller * len(sellers)
