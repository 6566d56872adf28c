"""`make bench BENCH_ARGS=--smoke` still works: it brings up its own database, workers and web
server, runs every scenario at tiny sizes, audits the ledger after each, and writes a JSON and a
Markdown summary whose fields make sense. The numbers themselves are not judged."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from bench.scenarios import Sizes

ROOT = Path(__file__).resolve().parents[2]


def _bench_database_url() -> str:
    # Beside the test database, never the developer's: `<configured name>_bench_smoke`.
    db = connection.settings_dict
    name = settings.DATABASES["default"]["NAME"].removeprefix("test_")
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{name}_bench_smoke"


@pytest.mark.slow
@pytest.mark.workers
def test_make_bench_smoke_writes_sane_results(tmp_path):
    prefix = f"benchsmoke-{uuid.uuid4().hex[:8]}:"  # the suite's own workers share this Redis database
    args = f"--smoke --out {tmp_path} --redis-key-prefix {prefix}"
    proc = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "bench",
            f"BENCH_ARGS={args}",
            f"BENCH_DATABASE_URL={_bench_database_url()}",
            f"BENCH_REDIS_URL={settings.REDIS_URL}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # A smoke run measures nothing: it never leaves a `latest.*` or `latest-partial.*` copy.
    assert not list(tmp_path.glob("latest*")), sorted(p.name for p in tmp_path.iterdir())
    [json_path] = tmp_path.glob("*.json")
    results = json.loads(json_path.read_text())
    markdown = json_path.with_suffix(".md").read_text()
    sizes = Sizes.smoke()
    scenarios = results["scenarios"]

    assert results["meta"]["smoke"] is True
    assert results["meta"]["total_seconds"] > 0  # recorded; how long it takes is no test's to judge
    hot, many, http, imports = (scenarios[name] for name in ("hot_seller", "many_sellers", "http", "batch_import"))
    assert [s["status"] for s in (hot, many, http, imports)] == ["ok"] * 4, json.dumps(scenarios, indent=1)[:4000]

    assert hot["charges"] == sizes.hot_charges and hot["audit"] == "ok"
    assert many["charges"] == sizes.many_sellers * sizes.many_per_seller and many["audit"] == "ok"
    for s in (hot, many):
        assert 0 < s["charges_per_s"] < 10_000_000
        assert s["seconds"] > 0
        assert set(s["worker_peak_rss_mb"]) == {"shards0", "shards1"}
        assert all(20 < mb < 2000 for mb in s["worker_peak_rss_mb"].values())

    assert imports["rows"] == sizes.import_rows and imports["audit"] == "ok"
    assert 0 < imports["accepted_seconds"] < imports["settled_seconds"]
    large = imports["large"]
    assert large["rows"] == sizes.import_large_rows
    assert 0 < large["accepted_seconds"] <= large["queued_seconds"] <= large["settled_seconds"]
    assert 20 < large["web_peak_rss_mb"] < 2000 and 20 < large["import_worker_peak_rss_mb"] < 2000

    first = http[f"c{sizes.http_clients[0]}"]
    assert first["accepted"] > 0 and first["errors"] == {}
    lat = first["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    settle = http["settle"]
    assert settle["accepted"] > 0 and 0 < settle["latency_ms"]["p50"] <= settle["latency_ms"]["p99"]

    fulfilment = scenarios["fulfilment"]
    assert fulfilment["status"] == "ok" and fulfilment["audit"] == "ok", json.dumps(fulfilment, indent=1)[:4000]
    assert all(level["accepted_per_s"] > 0 and level["errors"] == {} for level in fulfilment["sandbox"].values())
    delivered = fulfilment["import"]
    assert delivered["valid_rows"] == sizes.fulfil_rows and delivered["charges_per_s"] > 0
    assert 0 < delivered["cpu_us_per_charge"]["fulfil"] < delivered["cpu_us_per_charge"]["server"]
    assert 0 < delivered["ratio_to_sandbox"]
    single = fulfilment["single"]
    assert single["accepted"] > 0 and single["errors"] == {}
    assert 0 < single["cpu_us_per_charge"]["web"] < single["cpu_us_per_charge"]["server"]
    assert 0 < single["latency_ms"]["p50"] <= single["latency_ms"]["p95"] <= single["latency_ms"]["p99"]
    by_callback = fulfilment["by_callback"]  # every answer by callback: the sandbox called back for each
    assert by_callback["accepted"] > 0 and by_callback["errors"] == {} and by_callback["rate"] == single["rate"]
    assert 0 < by_callback["cpu_us_per_charge"]["web"] < by_callback["cpu_us_per_charge"]["server"]
    assert fulfilment["sandbox_stats"]["callbacks_delivered"] >= by_callback["accepted"]

    if shutil.which("pgbench"):
        assert hot["limits"] and all(limit["rows_per_s"] > 0 for limit in hot["limits"])
        assert 0 < hot["ratio_to_limit"] < 100 and 0 < hot["ratio_to_unhashed_limit"] < 100
        assert many["limits"] and http["limits"]

    catalog = scenarios["catalog_sync"]
    assert catalog["status"] == "ok" and catalog["first"]["added"] == sizes.catalog_products
    assert catalog["repeat"]["added"] == catalog["repeat"]["changed"] == catalog["repeat"]["withdrawn"] == 0
    close = scenarios["provider_close"]
    assert close["status"] == "ok" and close["audit"] == "ok", json.dumps(close, indent=1)[:4000]
    assert close["charges"] == close["matched"] + close["mismatched"] == sizes.close_charges
    statements = scenarios["statements"]
    assert statements["status"] == "ok" and statements["audit"] == "ok", json.dumps(statements, indent=1)[:4000]
    assert statements["entries"] == sizes.statement_entries
    assert statements["balance_at"]["requests"] == sizes.balance_requests
    assert 0 < statements["build_seconds"] and 0 < statements["verify_seconds"]
    audit = scenarios["audit"]
    assert audit["status"] == "ok" and audit["sellers"] == sizes.audit_sellers
    assert {run["run"] for run in audit["runs"]} >= {"full", "periodic, nothing new"}
    assert all(run["entries_read"] > 0 for run in audit["runs"] if run["run"] == "full")

    assert "| hot_seller | reservations/s |" in markdown and "## Measured, and the targets" in markdown
    assert "| batch_import | big file: import worker peak RSS, MB |" in markdown
    assert "| fulfilment | import delivered: charges/s |" in markdown and "## The ledger audit" in markdown
    assert "smoke (not comparable)" in markdown  # tiny sizes are never judged against the targets
