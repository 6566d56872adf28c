"""The project's Redis clients against real sentinels: each follows a failover to the promoted
replica without being built again (the whole stack under load: test_sentinel_failover.py)."""

import time
import uuid

import pytest
import redis

from core import redis_client
from core.redis_script import ThreadScript
from ledger.fulfilment.gate import ProviderGate
from tests.broker.sentinel import redis_server_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_server_available(), reason="needs redis-server (it also runs the sentinels)"),
]

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def _until_answered(call, timeout: float = 10.0):
    """What every caller does while the master is away: fail fast, try again later."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_clients_and_bare_script_connections_follow_a_failover_to_the_promoted_replica(sentinels):
    client = redis_client.client(sentinels.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    script = ThreadScript(INCR, lambda: sentinels.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    gate = ProviderGate(
        "sentinel-test", redis_url=sentinels.url, rate=100, burst=10, failure_threshold=2, reset_timeout=60
    )
    key = f"test:sentinel:{uuid.uuid4().hex}"
    assert script(keys=[key], args=[1]) == 1
    # On the master the sentinels name: a bare connection that skipped them reached localhost:6379.
    assert client.get(key) == b"1"
    gate.record_failure()
    client.set("before", "1")
    assert client.wait(1, 2000) == 1  # replicated, so the promoted replica has it
    old = sentinels.kill_master()
    with pytest.raises(redis.ConnectionError):
        client.get("before")  # the dead master refuses at once; nothing hangs
    new = sentinels.wait_promoted(old)
    # The same client, the same thread's bare connection and the same gate, on the new master.
    assert _until_answered(lambda: client.get("before")) == b"1"
    assert _until_answered(lambda: script(keys=[key], args=[1])) == 2
    assert client.get(key) == b"2"
    assert client.connection_pool.get_master_address() == ("127.0.0.1", new)
    gate.record_failure()  # the second consecutive failure, counted on the new master
    assert gate.breaker_state() == "open"
