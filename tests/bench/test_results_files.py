"""Which result files a benchmark run writes. `bench/results/latest.*` (json, md and the charts) is
the last FULL run, the numbers git keeps: a partial run (`--only` some scenarios) is copied beside
it as `latest-partial.*` and a smoke run leaves only its `<timestamp>.*` files; neither replaces
`latest.*`. Checked on `bench.report.write` with the `meta` that `bench.run` builds from the
command line, in a temporary results folder, without running a scenario."""

import json
from types import SimpleNamespace

import pytest

from bench import report
from bench.run import SCENARIOS, parse_args, run_identity

OLD = "the last full run"
CHART_KINDS = ("settlement", "http", "memory")  # the charts bench.report draws


def _results(argv: list[str], stamp: str) -> dict:
    identity = run_identity(parse_args(argv))
    return {
        "meta": {
            "timestamp": stamp,
            **identity,
            "git_commit": "abc1234",
            "git_dirty": False,
            "cpus": 2,
            "load_average_before": [0.1, 0.1, 0.1],
            "load_average_after": [0.2, 0.2, 0.2],
            "postgres": "15",
            "python": "3.11",
            "settings": {"LEDGER_SETTLE_BATCH_SIZE": 5000, "LEDGER_SHARDS": 4, "worker_processes": 2, "web_workers": 2},
            "total_seconds": 1.0,
            "notes": [],
        },
        "scenarios": {name: {"status": "error", "error": "not run here", "wall_seconds": 0.0} for name in SCENARIOS},
    }


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """A results folder holding an earlier full run's `latest.*`, and charts drawn without
    matplotlib: one `<stamp>-<kind>.png` per kind in `kinds` (set by the test)."""
    for name in ("latest.json", "latest.md", *(f"latest-{kind}.png" for kind in CHART_KINDS)):
        (tmp_path / name).write_text(OLD)
    kinds: list[str] = []

    def charts(results, out_dir, stamp):
        paths = [out_dir / f"{stamp}-{kind}.png" for kind in kinds]
        for path in paths:
            path.write_bytes(b"\x89PNG new")
        return paths

    monkeypatch.setattr(report, "_charts", charts)
    return SimpleNamespace(path=tmp_path, kinds=kinds)


def _latest_untouched(folder) -> bool:
    return all(
        (folder / name).read_text() == OLD
        for name in ("latest.json", "latest.md", *(f"latest-{kind}.png" for kind in CHART_KINDS))
    )


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        ([], "full"),
        (["--only", *SCENARIOS], "full"),
        (["--only", "fulfilment"], "partial"),
        (["--only", "hot_seller", "http"], "partial"),
        (["--smoke"], "smoke"),
        (["--smoke", "--only", "http"], "smoke"),
        (["--only", "http", "--profile"], "partial"),
    ],
)
def test_the_command_line_says_which_copy_a_run_writes(argv, kind):
    meta = run_identity(parse_args(argv))
    assert meta["run"] == kind
    assert report.copy_prefix(meta) == {"full": "latest", "partial": "latest-partial", "smoke": None}[kind]


def test_a_partial_run_leaves_latest_untouched_and_is_copied_as_latest_partial(results_dir):
    stamp = "20270101T000000Z"
    folder = results_dir.path
    results_dir.kinds[:] = ["settlement"]
    (folder / "latest-partial-http.png").write_text("an older partial run's chart")

    paths = report.write(_results(["--only", "hot_seller", "fulfilment"], stamp), folder, stamp)

    assert _latest_untouched(folder)
    partial = json.loads((folder / "latest-partial.json").read_text())
    assert partial["meta"]["run"] == "partial" and partial["meta"]["timestamp"] == stamp
    assert partial["meta"]["scenarios_run"] == ["hot_seller", "fulfilment"]
    assert partial["charts"] == ["latest-partial-settlement.png"]
    assert (folder / "latest-partial-settlement.png").read_bytes() == b"\x89PNG new"
    assert not (folder / "latest-partial-http.png").exists()  # not this run's: removed
    heading = (folder / "latest-partial.md").read_text().splitlines()[0]
    assert heading.startswith(f"# Benchmark {stamp} (partial: only hot_seller, fulfilment;")
    assert (folder / f"{stamp}.json").exists() and (folder / f"{stamp}.md").exists()
    assert paths["copy"] == folder / "latest-partial.json"


def test_a_smoke_run_writes_only_its_timestamped_files(results_dir):
    stamp = "20270101T000001Z"
    folder = results_dir.path
    results_dir.kinds[:] = list(CHART_KINDS)

    paths = report.write(_results(["--smoke"], stamp), folder, stamp)

    assert _latest_untouched(folder)
    assert not list(folder.glob("latest-partial*"))
    written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("latest"))
    assert written == sorted([f"{stamp}.json", f"{stamp}.md", *(f"{stamp}-{k}.png" for k in CHART_KINDS)])
    assert "copy" not in paths
    assert json.loads((folder / f"{stamp}.json").read_text())["meta"]["run"] == "smoke"


def test_a_full_run_replaces_latest_and_none_of_the_earlier_charts_outlives_it(results_dir):
    stamp = "20270101T000002Z"
    folder = results_dir.path
    results_dir.kinds[:] = ["settlement", "memory"]  # e.g. the HTTP scenario failed: no HTTP chart
    (folder / "latest-partial.json").write_text("an earlier partial run")

    paths = report.write(_results([], stamp), folder, stamp)

    latest = json.loads((folder / "latest.json").read_text())
    assert latest["meta"]["run"] == "full" and latest["meta"]["timestamp"] == stamp
    assert latest["charts"] == ["latest-settlement.png", "latest-memory.png"]
    assert (folder / "latest.md").read_text().startswith(f"# Benchmark {stamp}\n")
    assert (folder / "latest-settlement.png").read_bytes() == b"\x89PNG new"
    assert (folder / "latest-memory.png").read_bytes() == b"\x89PNG new"
    assert not (folder / "latest-http.png").exists()  # the earlier run's chart, not this one's
    assert (folder / "latest-partial.json").read_text() == "an earlier partial run"
    assert paths["copy"] == folder / "latest.json"


def test_results_written_without_a_run_kind_are_never_copied_as_latest():
    # meta from before `run` existed, or built by hand: never mistaken for a full run.
    assert report.copy_prefix({"smoke": False}) == "latest-partial"
    assert report.copy_prefix({"smoke": True}) is None
