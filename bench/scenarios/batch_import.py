"""Scenario 4: batch import. The import itself (issue 4) and its benchmark driver
`bench/batch_import.py` are written by another engineer; this calls the driver when it exists
and reports 'not available yet' otherwise (the run does not fail)."""

from __future__ import annotations

import importlib.util

from bench.scenarios import Context


def run(ctx: Context) -> dict:
    if importlib.util.find_spec("bench.batch_import") is None:
        return {"status": "not available yet", "note": "bench/batch_import.py (issue 4) is not there yet"}
    module = importlib.import_module("bench.batch_import")
    entry = getattr(module, "run", None) or getattr(module, "main", None)
    if entry is None:
        return {"status": "not available yet", "note": "bench/batch_import.py has no run() or main() yet"}
    return entry(ctx)
