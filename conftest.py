import pytest
import redis
from django.conf import settings

from tests.support import WorkerStack


@pytest.fixture(scope="session")
def broker(django_db_setup):
    """The test Redis database, emptied of queued messages left by an earlier run."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def shard_workers(django_db_setup, django_db_blocker, broker, tmp_path_factory):
    """Real `celery worker` processes (the production command) consuming every shard, and beat."""
    stack = WorkerStack(tmp_path_factory.mktemp("workers")).start()
    yield stack
    stack.stop()


@pytest.fixture
def workers(shard_workers):
    """Per test: the session's workers, restarted if an earlier test killed one."""
    shard_workers.ensure_running()
    return shard_workers
