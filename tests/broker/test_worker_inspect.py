"""Remote control of the workers, as an operator and Flower use it: every worker started with the
production command answers `celery -A celery_app inspect stats`, `active_queues` and
`registered` (Flower's worker pages are those three replies), on a redis:// broker and on a
Sentinel-managed one, and no worker logs a `Control command error`.

The `stats` reply carries the broker connection's transport options
(`CELERY_BROKER_TRANSPORT_OPTIONS`); it is encoded as JSON, so one value JSON cannot hold (a
redis-py `Retry` in `sentinel_kwargs` did) made every worker drop every `stats` request."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from django.conf import settings

from devstack.processes import ROOT, Process
from tests.broker.sentinel import redis_server_available
from tests.support import WorkerStack

HOST = socket.gethostname()
INSPECTED = ("stats", "active_queues", "registered")


def _worker_processes(stack: WorkerStack) -> list[Process]:
    return [*stack.workers, stack.imports, stack.webhooks, stack.fulfil]


def _node_name(process: Process) -> str:
    """A worker's node name: its `-n name@%h`."""
    return process.argv[process.argv.index("-n") + 1].replace("%h", HOST)


def _node_names(stack: WorkerStack) -> set[str]:
    return {_node_name(process) for process in _worker_processes(stack)}


def _inspect(env: dict, command: str, nodes: set[str], timeout: float = 10.0) -> dict:
    """`celery -A celery_app inspect COMMAND --json` in the stack's environment; it returns as soon
    as every node in `nodes` has answered."""
    argv = [sys.executable, "-m", "celery", "-A", "celery_app", "inspect", command, "--json"]
    argv += ["--timeout", str(timeout), "--destination", ",".join(sorted(nodes))]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"`celery inspect {command}` failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_every_worker_answers(stack: WorkerStack, transport: str) -> dict:
    """Every worker's replies to INSPECTED, checked: {command: {node: reply}}."""
    nodes = _node_names(stack)
    replies = {command: _inspect(stack.env, command, nodes) for command in INSPECTED}
    for command, reply in replies.items():
        assert set(reply) == nodes, f"{command}: {sorted(nodes - set(reply))} did not answer"

    for node, stats in replies["stats"].items():
        assert stats["pool"] and stats["pid"], (node, stats)
        broker = stats["broker"]
        assert broker["transport"] == transport, (node, broker)
    for node, registered in replies["registered"].items():
        assert "ledger.settle_shard" in registered, (node, registered)

    queues = {node: {q["name"] for q in active} for node, active in replies["active_queues"].items()}
    shard_queues = {f"ledger.shard.{k}" for k in range(settings.LEDGER_SHARDS)}
    shard_nodes = {_node_name(process) for process in stack.workers}
    assert set().union(*(queues[node] for node in shard_nodes)) >= shard_queues, queues
    assert all("ledger.sweep" in queues[node] for node in shard_nodes), queues
    assert {"ledger.imports"} <= set().union(*queues.values()), queues

    for process in _worker_processes(stack):
        log = process.log_path.read_text(errors="replace")
        assert "Control command error" not in log, f"{process.name}:\n{process.log_tail()}"
    return replies


@pytest.mark.workers
def test_every_worker_answers_inspect_stats_queues_and_registered_on_a_redis_broker(workers):
    assert workers.env["REDIS_URL"].startswith("redis://")
    _assert_every_worker_answers(workers, transport="redis")


@pytest.mark.workers
@pytest.mark.slow
@pytest.mark.skipif(not redis_server_available(), reason="needs redis-server (it also runs the sentinels)")
def test_every_worker_answers_inspect_stats_queues_and_registered_on_a_sentinel_broker(
    sentinels, django_db_setup, tmp_path
):
    stack = WorkerStack(tmp_path, beat=False, env=sentinels.env)
    try:
        stack.start()
        replies = _assert_every_worker_answers(stack, transport="sentinel")
        for node, reply in replies["stats"].items():
            options = reply["broker"]["transport_options"]
            assert options["master_name"] == sentinels.master_name, (node, options)
    finally:
        stack.stop()
