"""A standby shard worker (`manage.py shardworker INDEX --standby`, the production command) beside
the session's workers: it waits while the group's worker lives, takes the group over when that
worker is SIGKILLed, and steps down when the worker comes back. Every charge settles exactly once."""

import signal
import socket
import sys
import time

import pytest
from django.core.management import call_command
from django.db import close_old_connections

from devstack.processes import Process
from devstack.stack import ROOT
from ledger.models import Charge, Entry
from ops.report import queue_report
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled
from workers import leases
from workers.assignment import shard_assignment

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]
# The takeover target (docs/scaling.md): lease expiry (2 s in the suite) plus the worker's start.
TAKEOVER_LIMIT = 10.0


def _charges(seller, count: int) -> None:
    client = client_for(seller.user)
    for _ in range(count):
        answer = client.post("/api/v1/charges/", {"phone_number": "+989121234567", "amount": 1}, format="json")
        assert answer.status_code == 202, answer.json()


def _seller_of_group(group: list[int], shards: int):
    while True:
        seller = make_seller()
        if seller.pk % shards in group:
            return seller


def test_a_standby_takes_over_a_killed_workers_shards_and_steps_down_when_it_returns(workers, tmp_path, settings):
    groups = shard_assignment(settings.LEDGER_SHARDS, len(workers.workers))
    index = len(groups) - 1  # not the group that also consumes the default queue
    env = dict(workers.env, LEDGER_WORKER_PROCESSES=str(len(groups)))
    argv = [sys.executable, str(ROOT / "manage.py"), "shardworker", str(index), "--standby"]
    standby = Process("standby", argv, env, tmp_path)
    standby.start(ready_marker="waiting for their worker")
    try:
        deadline = time.monotonic() + 10
        while not any(s["shards"] == groups[index] for s in queue_report(oldest_limit=0)["standbys"]):
            assert time.monotonic() < deadline, "ops/queues never listed the standby"
            time.sleep(0.2)
        call_command("workerhealth", str(index), "--standby")  # its container health check passes

        admin, seller = make_admin(), _seller_of_group(groups[index], settings.LEDGER_SHARDS)
        request_and_approve(seller, 100, admin)
        _charges(seller, 5)
        wait_settled(seller.pk, timeout=30)
        active = workers.worker_for_seller(seller.pk)

        active.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        _charges(seller, 10)
        wait_settled(seller.pk, timeout=30)
        takeover = time.monotonic() - killed_at
        print(f"standby settled the group's charges {takeover:.1f} s after its worker was killed")
        assert takeover <= TAKEOVER_LIMIT
        assert leases.holder(groups[index]) == f"shards{index}-standby@{socket.gethostname()}"
        assert "taking over" in standby.log_tail(20000)

        workers.ensure_running()  # the group's own worker is back: the standby yields to it
        deadline = time.monotonic() + 20
        while standby.alive:
            assert time.monotonic() < deadline, f"the standby did not step down:\n{standby.log_tail()}"
            time.sleep(0.2)
        assert "this standby stops" in standby.log_tail(20000)
        _charges(seller, 5)
        wait_settled(seller.pk, timeout=30)
    finally:
        standby.kill()

    close_old_connections()
    charges = Charge.objects.filter(seller=seller)
    assert charges.count() == 20 and not charges.filter(status=Charge.Status.FAILED).exists()
    assert Entry.objects.filter(seller=seller, kind=Entry.Kind.CHARGE).count() == 20  # each held once
    assert_ledger_audit(seller.pk)
