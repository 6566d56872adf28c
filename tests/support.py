"""Test support: real celery worker and beat processes against the test database, waiting for
settlement, and the ledger audit every money test ends with."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections

from devstack.processes import Process
from ledger.models import Charge, ChargeBatch, Deposit
from workers.assignment import shard_assignment
from workers.commands import fulfil_worker_argv, import_worker_argv, webhook_worker_argv, worker_argv

WEBHOOK_TEST_SCHEDULE = "0,1,1,2,2,2,2,2,2,2,2,2,2,2,2"

# The session's sandbox provider (root conftest.py): short hang and pending times.
SANDBOX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SANDBOX_DEFAULTS = {
    "latency_ms": 1,
    "decline_rate": 0,
    "throttle_rate": 0,
    "error_rate": 0,
    "drop_rate": 0,
    "pending_rate": 0,
    "reverse_rate": 0,
    "stale_rate": 0,
    "pending_seconds": 1.0,
    "hang_seconds": 2.0,
    "reverse_seconds": 1.0,
    "token_seconds": 3600.0,
    "down": False,
}


def sandbox_options(**overrides) -> dict:
    options = {k: v for k, v in SANDBOX_DEFAULTS.items() if k != "down"} | {"callback_secret": SANDBOX_SECRET}
    return options | overrides


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
        LEDGER_IMPORT_RESUME_AFTER="3",
        # A standby takes a killed worker's shards over 2 s after its last renewal (workers/leases.py).
        LEDGER_SHARD_LEASE_SECONDS="2",
        # Webhooks on a short clock: retries seconds apart, a lost claim due again in seconds.
        NOTIFICATIONS_SWEEP_INTERVAL="1",
        WEBHOOK_RETRY_SCHEDULE=WEBHOOK_TEST_SCHEDULE,
        WEBHOOK_LEASE="6",
        WEBHOOK_TIMEOUT="2",
        PYTHONUNBUFFERED="1",
        # Fulfilment on a short clock too: lookups seconds after sending.
        PROVIDER_URL=settings.PROVIDER_URL,
        PROVIDER_CALLBACK_SECRET=settings.PROVIDER_CALLBACK_SECRET,
        PROVIDER_EXTERNAL_ID_PREFIX=settings.PROVIDER_EXTERNAL_ID_PREFIX,
        PROVIDER_READ_TIMEOUT=str(settings.PROVIDER_READ_TIMEOUT),
        PROVIDER_LOOKUP_AFTER=str(settings.PROVIDER_LOOKUP_AFTER),
        PROVIDER_RESEND_AFTER=str(settings.PROVIDER_RESEND_AFTER),
        PROVIDER_RESEND_BACKOFF_MAX=str(settings.PROVIDER_RESEND_BACKOFF_MAX),
        PROVIDER_REDISPATCH_AFTER=str(settings.PROVIDER_REDISPATCH_AFTER),
        PROVIDER_RECONCILE_INTERVAL=str(settings.PROVIDER_RECONCILE_INTERVAL),
        PROVIDER_BREAKER_RESET=str(settings.PROVIDER_BREAKER_RESET),
    )
    env.update(extra or {})
    return env


# The session's worker stack once a test has started it (conftest.py's shard_workers).
started_stacks: list[WorkerStack] = []


def stop_session_workers() -> None:
    """For tests that run a stack of their own on the test database (the fault suite, the Sentinel
    failover): the session's workers would otherwise wake and settle that stack's sellers through
    their own broker and hide a recovery that failed. The next test that asks for `workers` starts
    them again."""
    for stack in started_stacks:
        stack.stop()


class WorkerStack:
    """Shard workers started with the production command (plus beat, for the sweeper)."""

    def __init__(self, log_dir: Path, *, processes: int = 2, beat: bool = True, env: dict | None = None):
        self.env = subprocess_env(env)
        self.workers: list[Process] = []
        for index, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, processes)):
            argv = worker_argv(shards, name=f"test-shards{index}", with_default_queue=index == 0)
            self.workers.append(Process(f"shards{index}", argv, self.env, log_dir))
        self.imports = Process("imports", import_worker_argv(name="test-imports"), self.env, log_dir)
        # The webhook worker (queue ledger.webhooks), as `make up` runs it.
        self.webhooks = Process("webhooks", webhook_worker_argv(name="test-webhooks"), self.env, log_dir)
        self.fulfil = Process("fulfil", fulfil_worker_argv(name="test-fulfil"), self.env, log_dir)
        self.beat = None
        if beat:
            argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_app",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(log_dir / "beat-schedule"),
            ]
            self.beat = Process("beat", argv, self.env, log_dir)

    def _ready_marker(self, process: Process) -> str:
        return "beat: Starting" if process is self.beat else " ready."

    def _processes(self) -> list[Process]:
        return [p for p in (*self.workers, self.imports, self.webhooks, self.fulfil, self.beat) if p is not None]

    def _start_together(self, processes: list[Process]) -> None:
        """Each spends seconds importing Django and Celery, much of it waiting on the other core."""
        for process in processes:
            process.start()
        for process in processes:
            process.wait_for_log(self._ready_marker(process), timeout=60)

    def start(self) -> WorkerStack:
        self._start_together(self._processes())
        return self

    def worker_for_seller(self, seller_id: int) -> Process:
        shard = seller_id % settings.LEDGER_SHARDS
        return self.workers[shard % len(self.workers)]

    def ensure_running(self) -> None:
        self._start_together([process for process in self._processes() if not process.alive])

    def stop(self) -> None:
        for process in self._processes():
            process.terminate()
        for process in self._processes():
            process.wait_stopped()


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


def wait_quiet(timeout: float = 30.0) -> bool:
    """Wait until the workers have nothing of the database's left to settle or import: any queued
    charge, approving deposit or unfinished import. False if work is still pending at the deadline
    (a test stopped the workers, say): the caller goes on regardless."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        pending = (
            Charge.objects.filter(status=Charge.Status.QUEUED).exists()
            or Deposit.objects.filter(status=Deposit.Status.APPROVING).exists()
            or ChargeBatch.objects.filter(
                status__in=[ChargeBatch.Status.VALIDATING, ChargeBatch.Status.QUEUED]
            ).exists()
        )
        if not pending and not _other_transactions_open():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _other_transactions_open() -> bool:
    """Whether another session of the test database is inside a transaction (a worker's event
    fan-out after a settle, say): pytest-django's TRUNCATE beside it can deadlock (CI saw it)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle')"
        )
        return cursor.fetchone()[0]


def settle_through_provider(seller_id: int) -> None:
    """In this process, what the shard and fulfilment workers do for a seller: reserve its queued
    charges, send them to the session's sandbox provider, and apply the answers."""
    from ledger.fulfilment.service import fulfil_charges
    from ledger.services.settlement import settle_seller

    settle_seller(seller_id=seller_id)
    reserved = list(
        Charge.objects.filter(seller_id=seller_id, stage=Charge.Stage.RESERVED)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for start in range(0, len(reserved), 500):
        fulfil_charges(reserved[start : start + 500])
    settle_seller(seller_id=seller_id)


def settle_until_final(seller_id: int, timeout: float = 20.0) -> None:
    """`settle_through_provider` until none of the seller's charges is open. The session's shard
    and fulfilment workers, once started, take committed charges too: one of them may hold a charge
    mid-send when this process finds nothing left to claim."""
    deadline = time.monotonic() + timeout
    while True:
        settle_through_provider(seller_id)
        if not Charge.objects.filter(seller_id=seller_id, stage__in=[*Charge.OPEN_STAGES, "queued"]).exists():
            return
        assert time.monotonic() < deadline, "the seller's charges were not settled in time"
        time.sleep(0.2)


def assert_ledger_audit(seller_id: int | None = None) -> None:
    """The management command itself: it raises CommandError on any breach."""
    args = ["--seller", str(seller_id)] if seller_id is not None else []
    call_command("ledger_audit", *args)
