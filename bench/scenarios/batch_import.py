"""Scenario 4: batch import, through the driver of issue 4 (`bench/batch_import.py`, written with
the import itself): a 100,000-row file's time to accepted and to settled, and the web process's
peak memory on a 1,000,000-row file. Reports 'not available yet' while the driver is missing
(the run does not fail for that)."""

from __future__ import annotations

import importlib
import importlib.util

from django.conf import settings

from bench.scenarios import Context, ScenarioFailed
from bench.stack import reset_ledger


def run(ctx: Context) -> dict:
    if importlib.util.find_spec("bench.batch_import") is None:
        return {"status": "not available yet", "note": "bench/batch_import.py (issue 4) is not there yet"}
    driver = importlib.import_module("bench.batch_import")
    if not hasattr(driver, "run"):
        return {"status": "not available yet", "note": "bench/batch_import.py has no run(ctx) yet"}
    batch = settings.LEDGER_SETTLE_BATCH_SIZE
    limits = []
    if ctx.limits is not None:
        rows = ctx.sizes.import_rows
        limits = [ctx.limits.debits(name=f"{batch} debits per transaction, one row (import)", debits_per_txn=batch,
                                    sellers=1, transactions=max(2, rows // batch))]
    reset_ledger()
    try:
        result = driver.run(ctx)
    except RuntimeError as exc:  # the driver's own correctness checks (counts, audit)
        raise ScenarioFailed(f"batch import: {exc}") from exc
    finally:
        ctx.stack.stop_web()
    result["import_memory_rows"] = result.get("memory_rows")
    result["import_memory_peak_mb"] = result.get("web_peak_rss_mb")
    result["limits"] = [limit.as_dict() for limit in limits]
    if limits and result.get("settled_seconds"):
        result["settled_rows_per_s"] = round(result["valid_rows"] / result["settled_seconds"])
        result["ratio_to_limit"] = round(result["settled_rows_per_s"] / limits[0].rows_per_s, 3)
    return result
