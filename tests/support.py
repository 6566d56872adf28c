"""Test support: real celery worker and beat processes against the test database, waiting for
settlement, and the ledger audit every money test ends with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections

from ledger.models import Charge, Deposit
from workers.stack import shard_assignment, webhook_worker_argv, worker_argv

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_TEST_SCHEDULE = "0,1,1,2,2,2,2,2,2,2,2,2,2,2,2"


def subprocess_env(extra: dict | None = None) -> dict:
    """Environment for child processes: the test database and the test Redis database."""
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        LEDGER_SHARDS=str(settings.LEDGER_SHARDS),
        LEDGER_SWEEP_INTERVAL="1",
        LEDGER_SWEEP_AFTER="2",
        # Webhooks on a short clock: retries seconds apart, a lost claim due again in seconds.
        NOTIFICATIONS_SWEEP_INTERVAL="1",
        WEBHOOK_RETRY_SCHEDULE=WEBHOOK_TEST_SCHEDULE,
        WEBHOOK_LEASE="6",
        WEBHOOK_TIMEOUT="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


class Process:
    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self, ready_marker: str | None = None, timeout: float = 30.0) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        log.close()
        if ready_marker:
            self.wait_for_log(ready_marker, timeout)

    def wait_for_log(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                if marker.encode() in fh.read():
                    return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.alive:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerStack:
    """Shard workers started with the production command (plus beat, for the sweeper)."""

    def __init__(self, log_dir: Path, *, processes: int = 2, beat: bool = True, env: dict | None = None):
        self.env = subprocess_env(env)
        self.workers: list[Process] = []
        for index, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, processes)):
            argv = worker_argv(shards, name=f"test-shards{index}", with_default_queue=index == 0)
            self.workers.append(Process(f"shards{index}", argv, self.env, log_dir))
        # The webhook worker (queue ledger.webhooks), as `make up` runs it.
        self.webhooks = Process("webhooks", webhook_worker_argv(name="test-webhooks"), self.env, log_dir)
        self.beat = None
        if beat:
            argv = [sys.executable, "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO",
                    "--schedule", str(log_dir / "beat-schedule")]
            self.beat = Process("beat", argv, self.env, log_dir)

    def start(self) -> WorkerStack:
        for worker in [*self.workers, self.webhooks]:
            worker.start(ready_marker=" ready.")
        if self.beat:
            self.beat.start(ready_marker="beat: Starting")
        return self

    def worker_for_seller(self, seller_id: int) -> Process:
        shard = seller_id % settings.LEDGER_SHARDS
        return self.workers[shard % len(self.workers)]

    def ensure_running(self) -> None:
        for process in [*self.workers, self.webhooks, self.beat]:
            if process is not None and not process.alive:
                process.start(ready_marker="beat: Starting" if process is self.beat else " ready.")

    def stop(self) -> None:
        for process in [*self.workers, self.webhooks, self.beat]:
            if process is not None:
                process.stop()


def wait_settled(*seller_ids: int, timeout: float = 120.0) -> None:
    """Wait until none of the sellers has a queued charge or an approving deposit."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        pending = (
            Charge.objects.filter(seller_id__in=seller_ids, status=Charge.Status.QUEUED).count()
            + Deposit.objects.filter(seller_id__in=seller_ids, status=Deposit.Status.APPROVING).count()
        )
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending} intents of sellers {seller_ids} still unsettled after {timeout}s")
        time.sleep(0.1)


def assert_ledger_audit(seller_id: int | None = None) -> None:
    """The management command itself: it raises CommandError on any breach."""
    args = ["--seller", str(seller_id)] if seller_id is not None else []
    call_command("ledger_audit", *args)
