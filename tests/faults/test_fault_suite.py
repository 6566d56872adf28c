"""The seeded fault suite (docs/operations.md, "Faults and recovery"): a production-mode stack
(gunicorn, shard workers, the fulfilment worker and beat started with the production commands,
production settings, a private redis-server, a sandbox provider of its own, the test database)
under retrying clients, broken in every way an operator meets: SIGKILLed shard workers, gunicorn
workers and master, beat; Redis killed and restarted empty; every database backend terminated
mid-settle; floods of duplicate and reordered wake-ups; all at once; and the provider down, slow,
killed and restarted, dropping answers, closing keep-alive connections as requests arrive,
reversing completed top-ups and completing top-ups it had declined (late successes, settled by an
admin), down while products are routed to it and to a second provider (failover), and the second
provider out of money while products are routed to it first (insufficient balance: failover back).
No charge may fail that the provider did not refuse, every reversal is refunded once, and every
charge is final within seconds of the provider being healthy again.

Quick mode (in `make test`): one seed, every fault once. Full mode: `FAULT_SEEDS=N` seeds, a
results table printed and written to test-artifacts/faults/report.md (details in report.json)."""

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.faults.suite import ALL_FAULTS, PROVIDER_FAULTS, SINGLE_FAULTS, Scenario, report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults"
# The target is 5 s. The default bound leaves the shared test machine some slack; the results in
# docs/operations.md are measured against the target itself (FAULT_RECOVERY_LIMIT=5).
RECOVERY_LIMIT = float(os.environ.get("FAULT_RECOVERY_LIMIT", "8"))
# Every charge final within this long of the provider being healthy again (the target).
PROVIDER_RECOVERY_LIMIT = float(os.environ.get("FAULT_PROVIDER_RECOVERY_LIMIT", "15"))
FULL_SEEDS = int(os.environ.get("FAULT_SEEDS", "0"))


def _assert_targets(runs) -> None:
    for run in runs:
        for fault in run.faults:
            where = f"seed {run.seed}, {fault.kind} {fault.notes}"
            if fault.kind in PROVIDER_FAULTS:
                # The API never sees the provider: nothing but the settle's time changes.
                assert fault.server_errors == fault.outcome_unknown == 0, f"{where}: 5xx answers"
                assert fault.final_after_healthy <= PROVIDER_RECOVERY_LIMIT, (
                    f"{where}: charges final {fault.final_after_healthy}s after the provider was back"
                )
                met = [fault.notes.get(name, 1) for name in ("stale_closed", "dropped", "reversed", "late_successes")]
                assert all(met), f"{where}: no fault met"
                assert fault.notes.get("moved", 1) and fault.notes.get("at_backup", 1), f"{where}: nothing failed over"
            elif fault.kind in SINGLE_FAULTS:
                assert fault.server_errors == 0, f"{where}: {fault.server_errors} 5xx answers"
                # Every client sends a key: a write lost mid-way answers 503, never outcome_unknown.
                assert fault.outcome_unknown == 0, f"{where}: {fault.outcome_unknown} outcome_unknown answers"
                assert fault.recovery <= RECOVERY_LIMIT, f"{where}: recovered after {fault.recovery}s"
            else:
                assert fault.recovery <= 3 * RECOVERY_LIMIT, f"{where}: recovered after {fault.recovery}s"


def _write(runs, name: str) -> None:
    """The table (markdown) and every fault's details (JSON) under test-artifacts/faults/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    text = report(runs)
    (ARTIFACTS / f"{name}.md").write_text(text + "\n")
    (ARTIFACTS / f"{name}.json").write_text(json.dumps([asdict(run) for run in runs], indent=1, default=str))
    print("\n" + text)


def test_every_fault_once_loses_nothing_and_recovers_within_seconds(stack):
    seed = int(os.environ.get("FAULT_SEED", "1"))
    scenario = Scenario(stack, seed)
    run = scenario.run(ALL_FAULTS, quiet=(1.5, 2.5))  # shorter pauses than full mode: the suite's clock
    scenario.check()
    _write([run], "quick")
    _assert_targets([run])


@pytest.mark.skipif(not FULL_SEEDS, reason="full mode: FAULT_SEEDS=N runs N seeds")
def test_full_fault_suite_over_many_seeds(stack):
    first = int(os.environ.get("FAULT_SEED", "1"))
    runs = []
    for seed in range(first, first + FULL_SEEDS):
        scenario = Scenario(stack, seed)
        runs.append(scenario.run(ALL_FAULTS))
        scenario.check()
    _write(runs, "report")
    _assert_targets(runs)
