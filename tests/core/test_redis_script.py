"""core/redis_script.py against the real Redis: the same results as redis-py's scripts, a
connection per thread, and recovery from what happens to long-lived connections."""

import os
import threading
import uuid

import pytest
import redis
from django.conf import settings

from core.redis_script import ThreadScript

INCR = "return {redis.call('INCRBY', KEYS[1], ARGV[1]), redis.call('GET', KEYS[1])}"


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def key(client):
    name = f"test:redis-script:{uuid.uuid4().hex}"
    yield name
    client.delete(name)


def _script(name: str | None = None) -> ThreadScript:
    return ThreadScript(INCR, lambda: settings.REDIS_URL, socket_timeout=2, client_name=name)


def test_same_results_as_redis_pys_scripts(client, key):
    assert _script()(keys=[key], args=[2]) == [2, b"2"]
    assert client.register_script(INCR)(keys=[key], args=[3]) == [5, b"5"]
    with pytest.raises(redis.ResponseError):
        _script()(keys=[key], args=["not a number"])


def test_a_flushed_script_cache_is_loaded_again(client, key):
    script = _script()
    script(keys=[key], args=[1])
    client.script_flush()
    assert script(keys=[key], args=[1])[0] == 2


def test_a_connection_closed_by_redis_is_replaced(client, key):
    name = f"test-{uuid.uuid4().hex[:8]}"
    script = _script(name)
    script(keys=[key], args=[1])
    killed = [c for c in client.client_list() if c["name"] == name]
    assert len(killed) == 1
    client.client_kill_filter(_id=killed[0]["id"])
    assert script(keys=[key], args=[1])[0] == 2  # tried once more, on a new connection


def test_one_connection_per_thread(client, key):
    name = f"test-{uuid.uuid4().hex[:8]}"
    script = _script(name)
    barrier = threading.Barrier(4)  # three threads and this one

    def call():
        script(keys=[key], args=[1])
        barrier.wait(timeout=10)  # all three connections are open now
        barrier.wait(timeout=10)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=10)
    try:
        assert len([c for c in client.client_list() if c["name"] == name]) == 3
    finally:
        barrier.wait(timeout=10)
        for thread in threads:
            thread.join()
    assert int(client.get(key)) == 3


def test_a_forked_child_opens_its_own_connection(key):
    script = _script()
    script(keys=[key], args=[1])
    parent_connection = script._local.connection
    pid = os.fork()
    if pid == 0:  # the child: must neither reuse nor close the parent's socket
        ok = False
        try:
            ok = script(keys=[key], args=[1])[0] == 2 and script._local.connection is not parent_connection
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert script(keys=[key], args=[1])[0] == 3  # the parent's connection still works


def test_an_unreachable_redis_raises_redis_py_errors():
    script = ThreadScript(INCR, lambda: "redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        script(keys=["k"], args=[1])
