"""What the summary of a run says of each metric (`bench.report.evaluate` and `markdown`): its value
found by its key path, and for a target the verdict, without running a scenario."""

from bench import report


def _results(scenarios: dict, *, smoke: bool = False) -> dict:
    meta = {
        "timestamp": "20270101T000000Z",
        "smoke": smoke,
        "run": "smoke" if smoke else "full",
        "git_commit": "abc1234",
        "git_dirty": False,
        "cpus": 2,
        "load_average_before": [0.1],
        "postgres": "15",
        "python": "3.11",
        "settings": {"LEDGER_SETTLE_BATCH_SIZE": 5000, "LEDGER_SHARDS": 4, "worker_processes": 2, "web_workers": 2},
        "total_seconds": 1.0,
    }
    return {"meta": meta, "scenarios": scenarios}


def _row(rows: list[dict], scenario: str, metric: str) -> dict:
    return next(row for row in rows if (row["scenario"], row["metric"]) == (scenario, metric))


def test_targets_are_judged_from_the_values_a_scenario_measured_even_when_it_failed_afterwards():
    results = _results(
        {
            "hot_seller": {"status": "ok", "charges_per_s": 25_000, "worker_peak_rss_mb": {"s0": 150.0, "s1": 250.0}},
            "http": {"status": "failed", "c32": {"accepted_per_s": 600.0}},
            "batch_import": {"status": "error", "error": "boom"},
        }
    )
    rows = report.evaluate(results)

    assert _row(rows, "hot_seller", "charges_per_s")["verdict"] == "met"
    largest = _row(rows, "hot_seller", "worker_peak_rss_mb.max")  # the largest of the workers' peaks
    assert largest["value"] == 250.0
    assert largest["verdict"] == "missed by 25% (docs/performance.md, *Hot seller*)"
    assert _row(rows, "http", "c32.accepted_per_s")["verdict"].startswith("missed by 14%")
    assert _row(rows, "http", "c32.latency_ms.p99")["verdict"] == "failed"  # not measured before it failed
    crashed = _row(rows, "batch_import", "settled_seconds")
    assert crashed["value"] is None and crashed["verdict"] == "error"
    assert not [row for row in rows if row["scenario"] == "fulfilment"]  # not run: not reported


def test_a_smoke_run_is_never_judged_and_a_star_takes_every_key_that_has_the_rest_of_the_path():
    sandbox = {"c64": {"accepted_per_s": 1176.0}, "c256": {"accepted_per_s": 4158.0}}
    results = _results({"fulfilment": {"status": "ok", "sandbox": sandbox, "import": {"charges_per_s": 5}}}, smoke=True)
    results["summary"] = rows = report.evaluate(results)

    assert _row(rows, "fulfilment", "import.charges_per_s")["verdict"] == "smoke (not comparable)"
    assert _row(rows, "fulfilment", "sandbox.*.accepted_per_s")["value"] == {"c64": 1176.0, "c256": 4158.0}
    assert "| fulfilment | the sandbox alone: transactions created/s, by clients | c64 1,176, c256 4,158 |" in (
        report.markdown(results)
    )
