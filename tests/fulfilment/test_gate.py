"""ledger/fulfilment/gate.py against the real Redis. Two gates on one prefix stand for two worker
processes (they share nothing but Redis); one test uses a real child process."""

import logging
import multiprocessing
import socket
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from ledger.fulfilment.gate import ProviderGate, gate_for


@pytest.fixture
def prefix():
    prefix = f"test:gate:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _gate(prefix: str, *, url: str | None = None, **overrides) -> ProviderGate:
    options = {"rate": 10, "burst": 10, "failure_threshold": 3, "reset_timeout": 0.2} | overrides
    return ProviderGate("acme", redis_url=url or settings.REDIS_URL, key_prefix=prefix, **options)


def test_two_gates_share_one_rate_limit(prefix):
    first, second = _gate(prefix), _gate(prefix)
    assert first.take(7) == 7
    assert second.take(7) == 3  # only what is left of this second
    assert first.take(1) == 0
    assert 0 < second.wait_hint() <= 1
    assert first.snapshot()["window_used"] == 10


def test_one_take_is_bounded_by_the_burst(prefix):
    gate = _gate(prefix, rate=100, burst=5)
    assert gate.take(50) == 5
    assert gate.take(3) == 3
    assert gate.wait_hint() == 0


def _take_ones(prefix: str, start, granted) -> None:
    gate = _gate(prefix)
    start.wait()
    granted.put(sum(gate.take(1) for _ in range(20)))


def test_a_child_process_and_this_one_share_the_limit(prefix):
    context = multiprocessing.get_context("fork")
    start, granted = context.Event(), context.Queue()
    child = context.Process(target=_take_ones, args=(prefix, start, granted))
    child.start()
    gate = _gate(prefix)
    start.set()
    mine = sum(gate.take(1) for _ in range(20))
    theirs = granted.get(timeout=10)
    child.join(timeout=10)
    assert child.exitcode == 0
    assert mine + theirs == 10


def test_pause_stops_every_gate_and_keeps_the_longest(prefix):
    first, second = _gate(prefix), _gate(prefix)
    first.pause(1.0)
    second.pause(0.1)  # a shorter Retry-After does not cut the pause short
    assert 0.8 < second.paused_for() <= 1.0
    assert first.take(1) == second.take(1) == 0
    assert second.wait_hint() > 0.8
    second.pause(2.0)
    assert first.paused_for() > 1.5


def test_a_pause_ends(prefix):
    gate = _gate(prefix)
    gate.pause(0.1)
    assert gate.take(1) == 0
    time.sleep(0.15)
    assert gate.paused_for() == 0
    assert gate.take(1) == 1


def test_breaker_opens_after_consecutive_failures_and_refuses_everyone(prefix):
    first, second = _gate(prefix, reset_timeout=5), _gate(prefix, reset_timeout=5)
    first.record_failure()
    second.record_failure()
    first.record_success()  # not consecutive: counting starts again
    first.record_failure()
    second.record_failure()
    assert first.breaker_state() == "closed" and first.allow()
    second.record_failure()
    assert first.breaker_state() == second.breaker_state() == "open"
    assert not first.allow() and not second.allow()
    assert 4 < first.open_for() <= 5
    assert second.wait_hint() > 4
    assert first.snapshot() | {"open_for": None} == {
        "name": "acme",
        "reachable": True,
        "state": "open",
        "open_for": None,
        "paused_for": 0,
        "failures": 3,
        "window_used": 0,
        "window_limit": 10,
    }


def _open_then_half_open(gate: ProviderGate) -> None:
    for _ in range(3):
        gate.record_failure()
    assert gate.breaker_state() == "open"
    time.sleep(0.25)
    assert gate.breaker_state() == "half-open" and gate.open_for() == 0


def test_half_open_admits_exactly_one_of_concurrent_callers_and_success_closes(prefix):
    _open_then_half_open(_gate(prefix))
    gates = [_gate(prefix) for _ in range(8)]
    barrier, admitted = threading.Barrier(len(gates)), []

    def try_once(gate):
        barrier.wait()
        admitted.append(gate.allow())

    threads = [threading.Thread(target=try_once, args=(gate,)) for gate in gates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(admitted) == [False] * 7 + [True]
    gates[0].record_success()
    assert gates[1].breaker_state() == "closed"
    assert all(gate.allow() for gate in gates)
    assert gates[2].snapshot()["failures"] == 0


def test_a_failed_trial_opens_again(prefix):
    gate = _gate(prefix)
    _open_then_half_open(gate)
    assert gate.allow()
    gate.record_failure()
    assert gate.breaker_state() == "open" and not gate.allow()
    assert 0.1 < gate.open_for() <= 0.2


def test_a_trial_never_reported_is_replaced_after_the_reset_timeout(prefix):
    first, second = _gate(prefix), _gate(prefix)
    _open_then_half_open(first)
    assert first.allow()  # this worker dies before it reports
    assert not second.allow()
    time.sleep(0.25)
    assert second.allow()


def test_unreachable_redis_fails_closed_without_raising(caplog):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gate = _gate("test:gate:down:", url=f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ledger.fulfilment.gate"):
        assert gate.allow() is False
        assert gate.take(5) == 0
        gate.record_success()
        gate.record_failure()
        gate.pause(1)
        assert gate.wait_hint() > 0
        assert gate.snapshot() == {"name": "acme", "reachable": False}
    with pytest.raises(redis.ConnectionError):
        gate.breaker_state()  # a plain read tells the truth
    assert time.monotonic() - started < 2
    assert len(caplog.records) == 7
    assert all(record.event == "ledger.provider_gate_unreachable" for record in caplog.records)


def test_gate_for_reads_the_settings_and_the_brokers_key_prefix(settings, prefix):
    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": prefix}
    settings.PROVIDER_RATE_LIMIT, settings.PROVIDER_RATE_BURST = 4, 3
    settings.PROVIDER_BREAKER_FAILURES, settings.PROVIDER_BREAKER_RESET = 1, 0.5
    gate_for.cache_clear()
    try:
        gate = gate_for("acme")
        assert gate_for("acme") is gate
        assert gate.take(10) == 3
        gate.record_failure()
        assert gate.breaker_state() == "open" and 0.4 < gate.open_for() <= 0.5
        keys = redis.Redis.from_url(settings.REDIS_URL).keys(f"{prefix}*")
        assert keys and all(key.startswith(f"{prefix}ledger:provider:acme:".encode()) for key in keys)
    finally:
        gate_for.cache_clear()
