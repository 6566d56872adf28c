"""Broker high availability: the production-mode stack of the fault suite (gunicorn, shard workers,
the fulfilment worker and beat, production settings) on a Sentinel-managed Redis
(`REDIS_URL=sentinel://...;sentinel://...;sentinel://...`), under the suite's retrying clients.
The master is SIGKILLed mid-load; the sentinels promote the replica; web, workers and Flower find
it on their own. Every accepted charge settles exactly once (the suite's checks and the audit),
the web answers every request without a 5xx, and the recovery is measured and printed
(docs/operations.md, "Redis Sentinel").

Acknowledged writes the replica had not received yet die with the master (replication is
asynchronous): wake-ups, fulfilment tasks, the shards' dirty sets. The workers' recovery on
reconnect, the reconciler and the sweeper cover them, as they cover a Redis restarted empty."""

from __future__ import annotations

import os
import secrets
import time

import pytest
import requests

from devstack.processes import Process, free_port
from devstack.stack import flower_argv
from ledger.models import Charge
from tests.broker.sentinel import SentinelRedis, redis_server_available
from tests.faults.stack import FaultStack
from tests.faults.suite import Fault, Scenario
from tests.support import stop_session_workers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.workers,
    pytest.mark.slow,
    pytest.mark.skipif(not redis_server_available(), reason="needs redis-server (it also runs the sentinels)"),
]

# From the kill until every charge accepted before the promotion has settled: detection
# (down-after 1 s here), the election and promotion, then kombu's reconnect back-off (2 s, then
# 4 s more) and the settle itself. Generous for shared 2-core machines.
RECOVERY_LIMIT = float(os.environ.get("SENTINEL_RECOVERY_LIMIT", "15"))


class FailoverScenario(Scenario):
    def redis_master_sigkill(self, fault: Fault) -> None:
        sentinels: SentinelRedis = self.stack.redis
        fault.notes["old_master"] = sentinels.kill_master()
        fault.notes["killed_at"] = time.time()
        self.approve_one()  # an admin's approval while no master answers
        fault.notes["new_master"] = sentinels.wait_promoted(fault.notes["old_master"])
        fault.notes["promoted_at"] = time.time()


class Flower:
    """`manage.py runflower`, as the stack runs it, on the same broker."""

    def __init__(self, stack: FaultStack, log_dir):
        self.port, self.auth = free_port(5600, 5699), ("ops", secrets.token_urlsafe(16))
        env = {**stack.env, "FLOWER_BASIC_AUTH": ":".join(self.auth)}
        self.process = Process("flower", flower_argv(host="127.0.0.1", port=self.port), env, log_dir)

    def wait_subscribed(self, master, timeout: float = 30.0) -> None:
        """Until Flower's event receiver listens on `master` (the sentinels only SUBSCRIBE there;
        a pattern subscription is Celery's events). After a failover its retry waits 2 s, then 4."""
        deadline = time.monotonic() + timeout
        while master.pubsub_numpat() < 1:
            assert self.process.alive, self.process.log_tail()
            assert time.monotonic() < deadline, f"Flower not subscribed on the master:\n{self.process.log_tail()}"
            time.sleep(0.2)

    def broker_page(self) -> requests.Response:
        """Flower reads queue lengths through its own Sentinel client (transport option master_name)."""
        return requests.get(f"http://127.0.0.1:{self.port}/broker", auth=self.auth, timeout=10)


@pytest.fixture
def sentinel_stack(django_db_blocker, tmp_path):
    stop_session_workers()
    with django_db_blocker.unblock():
        stack = FaultStack(tmp_path, SentinelRedis(tmp_path))
        stack.flower = Flower(stack, tmp_path)
        try:
            stack.flower.process.start()  # it starts while the rest does
            stack.start()
        except BaseException:
            stack.flower.process.stop()
            stack.stop()
            raise
    yield stack
    stack.flower.process.terminate()
    stack.stop()
    stack.flower.process.wait_stopped()


def _settled_after(sellers, since: float, until: float) -> tuple[float, float]:
    """(first, last) settle time, relative to `since`, of the charges accepted in [since, until)."""
    times = [
        (created.timestamp(), settled.timestamp())
        for created, settled in Charge.objects.filter(seller__in=sellers).values_list("created_at", "settled_at")
    ]
    settled = [s - since for c, s in times if since <= c < until]
    assert settled, "no charge was accepted while the master was away"
    return min(settled), max(settled)


def test_a_master_killed_under_load_is_replaced_and_nothing_accepted_is_lost(sentinel_stack):
    sentinel_stack.flower.wait_subscribed(sentinel_stack.broker())
    scenario = FailoverScenario(sentinel_stack, seed=1)
    run = scenario.run(("redis_master_sigkill",), quiet=(2.0, 2.5))
    scenario.check()  # every accepted key one charge, balances and entries exact, audit clean

    fault = run.faults[0]
    killed, promoted = fault.notes["killed_at"], fault.notes["promoted_at"]
    first, last = _settled_after(scenario.sellers, killed, promoted)
    print(
        f"\nsentinel failover: {run.charges} charges accepted; master {fault.notes['old_master']} killed, "
        f"replica {fault.notes['new_master']} promoted after {promoted - killed:.2f} s; the first charge "
        f"accepted after the kill settled {first:.2f} s after it, the last accepted before the promotion "
        f"{last:.2f} s after it; {fault.unavailable} 503, {fault.no_answer} unanswered"
    )
    assert fault.notes["new_master"] != fault.notes["old_master"]
    # The contract of a broker outage: POSTs keep answering 202 (the wake-up is logged as lost).
    assert fault.server_errors == 0 and fault.outcome_unknown == 0, fault
    assert fault.no_answer == 0, fault
    assert last <= RECOVERY_LIMIT, f"charges accepted during the failover settled {last:.2f} s after the kill"
    # Flower too: its events from the promoted master, its broker page through Sentinel.
    sentinel_stack.flower.wait_subscribed(sentinel_stack.broker())
    page = sentinel_stack.flower.broker_page()
    assert page.status_code == 200 and "sentinel://" in page.text, page.text[-2000:]
