"""The results of one run: `<timestamp>.json` (everything) and `.md` (the printed summary), copied
as `latest.*` by a full run, `latest-partial.*` by a partial one, not by a smoke run (`LATEST`):
git keeps only those copies."""

from __future__ import annotations

import json
from pathlib import Path

# What the summary shows of each scenario, in order: (scenario, key path in its results, what it
# is, and for a target what the ledger must reach on the 2-core machine: the bound and whether it
# is a "min" or a "max"). A path's `*` takes every key that has the rest of the path (a dict of
# their values); `max` of a dict without such a key is its largest value.
METRICS = [
    ("hot_seller", "charges_per_s", "reservations/s", 20_000, "min"),
    ("hot_seller", "worker_cpu_us_per_charge", "shard worker CPU µs per charge"),
    ("hot_seller", "ratio_to_limit", "ratio to pgbench at the settle's batch size", 0.8, "min"),
    ("hot_seller", "ratio_to_unhashed_limit", "ratio to the same pgbench without the hash step"),
    ("hot_seller", "hash_us_per_entry", "the settle's hashing, worker µs per entry"),
    ("hot_seller", "unhashed_estimate_per_s", "reservations/s without hashing, estimated from the two"),
    ("hot_seller", "times_one_debit_per_txn", "× pgbench at one debit per commit"),
    ("hot_seller", "worker_peak_rss_mb", "shard workers' peak RSS, MB"),
    ("hot_seller", "worker_peak_rss_mb.max", "shard workers' peak RSS, the largest, MB", 200, "max"),
    ("many_sellers", "charges_per_s", "reservations/s", 10_000, "min"),
    ("many_sellers", "worker_cpu_us_per_charge", "shard worker CPU µs per charge"),
    ("many_sellers", "ratio_to_limit", "ratio to pgbench", 0.5, "min"),
    ("many_sellers", "empty_tasks.tasks_per_s", "floor: tasks for no seller, per second"),
    ("many_sellers", "empty_tasks.worker_cpu_ms_per_task", "floor: worker CPU ms per task for no seller"),
    ("many_sellers", "worker_peak_rss_mb", "shard workers' peak RSS, MB"),
    ("many_sellers", "worker_peak_rss_mb.max", "shard workers' peak RSS, the largest, MB", 200, "max"),
    ("http", "c32.accepted_per_s", "accepted/s, 32 clients", 700, "min"),
    ("http", "c32.latency_ms.p99", "p99 ms, 32 clients", 100, "max"),
    ("http", "c128.accepted_per_s", "accepted/s, 128 clients"),
    ("http", "c128.latency_ms.p99", "p99 ms, 128 clients"),
    ("http", "*.web_cpu_ms_per_request", "web CPU ms per request, by clients"),
    ("http", "ratio_to_limit", "ratio to pgbench's inserts, 32 clients"),
    ("http", "settle.rate", "open loop at half load: requests/s"),
    ("http", "settle.latency_ms.p50", "open loop: submit → settled p50 ms"),
    ("http", "settle.latency_ms.p99", "open loop: submit → settled p99 ms", 250, "max"),
    # Settling keeps its pace through the run: the last seconds' shard tasks no slower than three
    # times the first seconds'.
    ("http", "shard_task_ms.growth", "shard task time, last 5 s / first 5 s", 3, "max"),
    # The first file from its upload's first byte to its batch completed; the big file's upload
    # answered, and both processes' memory while they handle it.
    ("batch_import", "accepted_seconds", "first file: upload answered, s"),
    ("batch_import", "settled_seconds", "first file: upload → completed, s", 15, "max"),
    ("batch_import", "ratio_to_limit", "first file: ratio to pgbench"),
    ("batch_import", "large.accepted_seconds", "big file: upload answered, s", 5, "max"),
    ("batch_import", "large.web_peak_rss_mb", "big file: web peak RSS, MB", 150, "max"),
    ("batch_import", "large.queued_seconds", "big file: upload → queued, s"),
    ("batch_import", "large.import_worker_peak_rss_mb", "big file: import worker peak RSS, MB", 200, "max"),
    ("batch_import", "large.import_worker_cpu_us_per_row", "big file: import worker CPU µs per row"),
    ("batch_import", "large.settled_seconds", "big file: upload → completed, s"),
    # Through the provider (the sandbox answering after 50 ms): an import from its first
    # reservation to its last posted answer, and single charges from submit to final.
    ("fulfilment", "sandbox.*.accepted_per_s", "the sandbox alone: transactions created/s, by clients"),
    ("fulfilment", "import.charges_per_s", "import delivered: charges/s", 2_000, "min"),
    ("fulfilment", "import.ratio_to_sandbox", "import delivered: ratio to the sandbox alone", 0.8, "min"),
    ("fulfilment", "import.cpu_us_per_charge.server", "import delivered: server CPU µs per charge", 1_000, "max"),
    ("fulfilment", "import.cpu_us_per_charge", "import delivered: CPU µs per charge by process"),
    ("fulfilment", "single.rate", "single charges: asked/s"),
    ("fulfilment", "single.achieved_per_s", "single charges: accepted/s"),
    ("fulfilment", "single.latency_ms.p50", "single charges: submit → final p50 ms"),
    ("fulfilment", "single.latency_ms.p99", "single charges: submit → final p99 ms", 300, "max"),
    ("fulfilment", "single.cpu_us_per_charge.server", "single charges: server CPU µs per charge", 3_000, "max"),
    ("fulfilment", "single.cpu_us_per_charge", "single charges: CPU µs per charge by process"),
    # The same rate with every final status by callback, as DT One's asynchronous API answers.
    ("fulfilment", "by_callback.achieved_per_s", "answered by callback: accepted/s"),
    ("fulfilment", "by_callback.latency_ms.p50", "answered by callback: submit → final p50 ms"),
    ("fulfilment", "by_callback.latency_ms.p99", "answered by callback: submit → final p99 ms"),
    ("fulfilment", "by_callback.cpu_us_per_charge.server", "answered by callback: server CPU µs per charge"),
    ("fulfilment", "by_callback.cpu_us_per_charge", "answered by callback: CPU µs per charge by process"),
    ("catalog_sync", "first.seconds", "first sync (all added), s", 30, "max"),
    ("catalog_sync", "repeat.seconds", "repeat (nothing changed), s", 30, "max"),
    ("catalog_sync", "changed.seconds", "10 % repriced and 5 % withdrawn, s", 30, "max"),
    ("provider_close", "seconds", "the day's close, s"),
    ("provider_close", "charges_per_s", "the day's close: charges/s"),
    ("statements", "balance_at.latency_ms.p99", "GET balance at a past time: p99 ms", 20, "max"),
    ("statements", "build_seconds", "a month's statement: request → built by the worker, s", 60, "max"),
    ("statements", "verify_seconds", "the seller's verifier over its CSV, s", 60, "max"),
]
# Where docs/performance.md says what bounds each scenario's numbers, shown when one is missed.
SECTIONS = {
    "hot_seller": "Hot seller",
    "many_sellers": "Many sellers",
    "http": "HTTP submission",
    "batch_import": "Batch import",
    "fulfilment": "Fulfilment",
    "catalog_sync": "Catalog sync",
    "provider_close": "Provider close",
    "statements": "Statements",
}


def lookup(value, path: str):
    """The value at a key path ("settle.latency_ms.p99") of a scenario's results, or None."""
    part, _, rest = path.partition(".")
    if not isinstance(value, dict):
        return None
    if part == "*":
        found = {key: lookup(child, rest) for key, child in value.items()}
        return {key: v for key, v in found.items() if v is not None} or None
    child = max(value.values(), default=None) if part == "max" and part not in value else value.get(part)
    return lookup(child, rest) if rest else child


def evaluate(results: dict) -> list[dict]:
    """Every metric of the scenarios run, with a verdict where it has a target."""
    rows = []
    for name, path, what, *bound in METRICS:
        scenario = results["scenarios"].get(name)
        if scenario is None:
            continue
        # A failed scenario may still carry what it measured before failing (reported, and judged).
        status = scenario.get("status", "n/a")
        value = lookup(scenario, path) if status in ("ok", "failed") else None
        row = {"scenario": name, "metric": path, "what": what, "value": value}
        if bound:
            (limit, sense), verdict = bound, ""
            if value is None:
                verdict = "n/a" if status == "ok" else status
            elif results["meta"]["smoke"]:
                verdict = "smoke (not comparable)"
            elif value >= limit if sense == "min" else value <= limit:
                verdict = "met"
            else:
                verdict = f"missed by {abs(value / limit - 1) * 100:.0f}% (docs/performance.md, *{SECTIONS[name]}*)"
            row.update(target=limit, sense=sense, verdict=verdict)
        rows.append(row)
    return rows


# The copy each kind of run (`bench.run.run_kind`) leaves beside its `<timestamp>.*` files. A
# partial or smoke run never replaces `latest.*`, the last full run's numbers.
LATEST = {"full": "latest", "partial": "latest-partial", "smoke": None}


def copy_prefix(meta: dict) -> str | None:
    """`latest`, `latest-partial` or None (no copy) for a run with this `meta`."""
    kind = meta.get("run") or ("smoke" if meta["smoke"] else "partial")  # unknown: never `latest`
    return LATEST[kind]


def write(results: dict, out_dir: Path, stamp: str) -> dict[str, Path]:
    """`<stamp>.json` and `<stamp>.md` in `out_dir`, and the same again under `copy_prefix`
    (`latest.json` and `latest.md` for a full run): the copy git keeps."""
    results["summary"] = evaluate(results)
    paths = {"json": out_dir / f"{stamp}.json", "markdown": out_dir / f"{stamp}.md"}
    if copy_as := copy_prefix(results["meta"]):
        paths["copy"] = out_dir / f"{copy_as}.json"
    for prefix in filter(None, (stamp, copy_as)):
        (out_dir / f"{prefix}.json").write_text(json.dumps(results, indent=2, default=str))
        (out_dir / f"{prefix}.md").write_text(markdown(results))
    return paths


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_fmt(v)}" for key, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: str, rows: list[list]) -> list[str]:
    columns = header.count("|") - 1
    return ["", header, "|" + " --- |" * columns, *("| " + " | ".join(map(_fmt, row)) + " |" for row in rows)]


def markdown(results: dict) -> str:
    meta, settings, scenarios = results["meta"], results["meta"]["settings"], results["scenarios"]
    title = f"# Benchmark {meta['timestamp']}"
    if meta["smoke"]:
        title += " (smoke: tiny sizes, numbers mean nothing)"
    elif meta.get("run") == "partial":
        title += f" (partial: only {', '.join(meta['scenarios_run'])}; the last full run is latest.md)"
    # fmt: off
    lines = [
        title,
        "",
        f"commit `{meta['git_commit']}`{' (uncommitted changes)' if meta['git_dirty'] else ''}, "
        f"{meta['cpus']} CPUs, load average {meta['load_average_before']} before / "
        f"{meta.get('load_average_after')} after, PostgreSQL {meta['postgres']}, Python {meta['python']}, "
        f"batch size {settings['LEDGER_SETTLE_BATCH_SIZE']}, {settings['LEDGER_SHARDS']} shards on "
        f"{settings['worker_processes']} worker processes, {settings['web_workers']} gunicorn workers, "
        f"{settings.get('load_generator', 'python')} load generator; "
        f"{meta['total_seconds']} s in all.",
    ]
    lines += _table("| scenario | status | ledger audit | seconds |", [
        [name, s.get("status"), s.get("audit", "–"), s.get("wall_seconds")] for name, s in scenarios.items()])
    lines += ["", "## Measured, and the targets"] + _table("| scenario | what | value | target | verdict |", [
        [r["scenario"], r["what"], r["value"], _target(r), r.get("verdict", "")] for r in results["summary"]])
    if limits := [lim for s in scenarios.values() for lim in s.get("limits", [])]:
        lines += ["", "## The limit: pgbench on scratch copies of the ledger tables"]
        lines += _table("| run | clients | transactions | rows/s | latency ms |", [
            [lim["name"], lim["clients"], lim["transactions"], lim["rows_per_s"], lim["latency_ms"]] for lim in limits])
    if runs := scenarios.get("audit", {}).get("runs"):
        lines += ["", f"## The ledger audit, {scenarios['audit']['sellers']} sellers"]
        lines += _table("| ledger entries | run | entries read | charges read | seconds |", [
            [r["ledger_entries"], r["run"], r["entries_read"], r["charges_read"], r["seconds"]] for r in runs])
    # fmt: on
    for name, s in scenarios.items():
        if s.get("status") != "ok":
            lines += ["", f"**{name} {s.get('status')}**: {s.get('error')}"]
    lines += [line for note in meta.get("notes") or [] for line in ("", f"Note: {note}")]
    return "\n".join(lines) + "\n"


def _target(row: dict) -> str:
    return "" if "target" not in row else ("≥ " if row["sense"] == "min" else "≤ ") + _fmt(row["target"])
