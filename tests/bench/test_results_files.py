"""Which result files a benchmark run writes. `bench/results/latest.*` (json and md) is the last
FULL run, the numbers git keeps: a partial run (`--only` some scenarios) is copied beside it as
`latest-partial.*` and a smoke run leaves only its `<timestamp>.*` files; neither replaces
`latest.*`. Checked on `bench.report.write` with the `meta` that `bench.run` builds from the
command line, in a temporary results folder, without running a scenario."""

import json

import pytest

from bench import report
from bench.run import SCENARIOS, parse_args, run_identity

OLD = "the last full run"


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
def folder(tmp_path):
    """A results folder holding an earlier full run's `latest.*`."""
    for name in ("latest.json", "latest.md"):
        (tmp_path / name).write_text(OLD)
    return tmp_path


def _latest_untouched(folder) -> bool:
    return all((folder / name).read_text() == OLD for name in ("latest.json", "latest.md"))


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


def test_a_partial_run_leaves_latest_untouched_and_is_copied_as_latest_partial(folder):
    stamp = "20270101T000000Z"

    paths = report.write(_results(["--only", "hot_seller", "fulfilment"], stamp), folder, stamp)

    assert _latest_untouched(folder)
    partial = json.loads((folder / "latest-partial.json").read_text())
    assert partial["meta"]["run"] == "partial" and partial["meta"]["timestamp"] == stamp
    assert partial["meta"]["scenarios_run"] == ["hot_seller", "fulfilment"]
    heading = (folder / "latest-partial.md").read_text().splitlines()[0]
    assert heading.startswith(f"# Benchmark {stamp} (partial: only hot_seller, fulfilment;")
    assert (folder / f"{stamp}.json").exists() and (folder / f"{stamp}.md").exists()
    assert paths["copy"] == folder / "latest-partial.json"


def test_a_smoke_run_writes_only_its_timestamped_files(folder):
    stamp = "20270101T000001Z"

    paths = report.write(_results(["--smoke"], stamp), folder, stamp)

    assert _latest_untouched(folder)
    assert not list(folder.glob("latest-partial*"))
    written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("latest"))
    assert written == [f"{stamp}.json", f"{stamp}.md"]
    assert "copy" not in paths
    assert json.loads((folder / f"{stamp}.json").read_text())["meta"]["run"] == "smoke"


def test_a_full_run_replaces_latest_and_leaves_latest_partial_alone(folder):
    stamp = "20270101T000002Z"
    (folder / "latest-partial.json").write_text("an earlier partial run")

    paths = report.write(_results([], stamp), folder, stamp)

    latest = json.loads((folder / "latest.json").read_text())
    assert latest["meta"]["run"] == "full" and latest["meta"]["timestamp"] == stamp
    assert (folder / "latest.md").read_text().startswith(f"# Benchmark {stamp}\n")
    assert (folder / "latest-partial.json").read_text() == "an earlier partial run"
    assert paths["copy"] == folder / "latest.json"


def test_results_written_without_a_run_kind_are_never_copied_as_latest():
    # meta from before `run` existed, or built by hand: never mistaken for a full run.
    assert report.copy_prefix({"smoke": False}) == "latest-partial"
    assert report.copy_prefix({"smoke": True}) is None
