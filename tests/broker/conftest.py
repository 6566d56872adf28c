import pytest

from tests.broker.sentinel import SentinelRedis


@pytest.fixture
def sentinels(tmp_path, settings):
    """A master, a replica and three sentinels of the test's own; this process's settings name
    their master, as the environment does for the processes the test starts."""
    cluster = SentinelRedis(tmp_path)
    settings.REDIS_SENTINEL_MASTER = cluster.master_name
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
