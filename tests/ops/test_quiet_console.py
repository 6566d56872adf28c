"""The console of `make up` is quiet while nothing happens: beat, the shard worker, the webhook and
the fulfilment workers, started with the production commands of `workers/commands.py` (as `runstack`
starts them) and left idle, print no line about their periodic tasks (beat's "Sending due task",
the workers' "received" and "succeeded in") while those find nothing to do; then a deposit and a
charge are recorded, and what happened to them is on the console.

The processes use a redis-server of their own (tests/faults/stack.py's PrivateRedis), so no other
stack of the session consumes their tasks, and the suite's short periods (LEDGER_SWEEP_INTERVAL=1,
PROVIDER_RECONCILE_INTERVAL=0.5, NOTIFICATIONS_SWEEP_INTERVAL=1: tests/support.py), so an idle
window of a few seconds holds many runs of every periodic task."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from ledger.models import Charge
from tests.faults.stack import PrivateRedis
from tests.support import Process, subprocess_env
from workers.commands import beat_argv, fulfil_worker_argv, webhook_worker_argv, worker_argv

ROOT = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 8.0
BOOKKEEPING = ("Sending due task", "] received", "succeeded in")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers, pytest.mark.slow]

# A deposit approved and a charge recorded, as the web would (the web's own line included).
RECORD = """
from ledger.services.charges import charge_submit
from tests.factories import make_admin, make_seller, request_and_approve
seller = make_seller()
request_and_approve(seller, 1_000, make_admin())
charge, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=100)
print("recorded", seller.pk, charge.pk)
"""


class Console:
    """What the processes print, from a point on (each writes a log of its own: runstack prefixes
    and merges them)."""

    def __init__(self, processes: list[Process]):
        self.processes = processes
        self.mark()

    def mark(self) -> None:
        self.offsets = {p.name: p.log_path.stat().st_size for p in self.processes}

    def lines(self) -> list[str]:
        out = []
        for p in self.processes:
            with open(p.log_path, "rb") as fh:
                fh.seek(self.offsets[p.name])
                out += [f"{p.name} | {line}" for line in fh.read().decode(errors="replace").splitlines()]
        return out


def _wait(condition, timeout: float, message) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message)
        time.sleep(0.2)


def test_an_idle_stack_prints_nothing_and_a_charge_is_on_the_console(tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = subprocess_env(redis.env)
    shards = Process(
        "shards0",
        worker_argv(list(range(settings.LEDGER_SHARDS)), name="quiet-shards0", with_default_queue=True),
        env,
        tmp_path,
    )
    processes = [
        shards,
        Process("webhooks", webhook_worker_argv(name="quiet-webhooks"), env, tmp_path),
        Process("fulfil", fulfil_worker_argv(name="quiet-fulfil"), env, tmp_path),
        Process("beat", beat_argv(schedule=str(tmp_path / "beat-schedule")), env, tmp_path),
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_for_log("beat: Starting" if process.name == "beat" else " ready.", timeout=90)
        # Start-up is over once the shard worker has run its recovery task of every shard
        # (workers/recovery.py): a task of its own, not a periodic one.
        _wait(
            lambda: shards.log_path.read_text(errors="replace").count("succeeded in") >= settings.LEDGER_SHARDS,
            60,
            lambda: f"the shard worker's recovery tasks never finished:\n{shards.log_tail()}",
        )
        time.sleep(1.0)

        console = Console(processes)
        time.sleep(IDLE_SECONDS)
        idle = console.lines()
        assert all(p.alive for p in processes), "\n".join(p.log_tail() for p in processes)
        noise = [line for line in idle if any(marker in line for marker in BOOKKEEPING)]
        assert not noise, f"{len(idle)} lines in {IDLE_SECONDS:.0f} idle seconds:\n" + "\n".join(idle[:40])
        assert len(idle) <= 2, "\n".join(idle[:40])

        console.mark()
        recorded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", RECORD],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert recorded.returncode == 0, recorded.stdout + recorded.stderr
        _, seller_id, charge_id = recorded.stdout.split()[-3:]
        # The web's lines in `make up`: the deposit's decision and the charge, at INFO.
        assert "charge queued" in recorded.stderr and "deposit approving" in recorded.stderr, recorded.stderr

        def succeeded() -> bool:
            return Charge.objects.get(pk=charge_id).status == Charge.Status.SUCCEEDED

        _wait(succeeded, 60, lambda: "the charge never succeeded:\n" + "\n".join(console.lines()[-40:]))
        _wait(
            lambda: sum("settled batch" in line for line in console.lines()) >= 2,
            30,
            lambda: "\n".join(console.lines()[-40:]),
        )
        after = console.lines()
        # The shard worker settled the deposit and reserved the charge, then posted it once the
        # provider had answered; the fulfilment worker sent it: each is on the console.
        assert any(line.startswith("shards0 |") and "settled batch" in line for line in after), after
        assert any(line.startswith("shards0 |") and "Task ledger.settle_shard[" in line for line in after), after
        assert any(line.startswith("fulfil |") and "Task ledger.fulfil[" in line for line in after), after
        assert int(seller_id) > 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait_stopped()
        redis.stop()
