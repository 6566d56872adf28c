import pytest
import redis
from django.conf import settings

from tests.support import WorkerStack, wait_quiet

# The session's worker stack once a test has started it; see quiet_workers_before_flush.
_started_stacks: list[WorkerStack] = []


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
    _started_stacks.append(stack)
    yield stack
    _started_stacks.remove(stack)
    stack.stop()


@pytest.fixture
def workers(shard_workers):
    """Per test: the session's workers, restarted if an earlier test killed one."""
    shard_workers.ensure_running()
    return shard_workers


@pytest.fixture(autouse=True)
def quiet_workers_before_flush(request):
    """After a transactional test, while the session's workers run, let them finish what the test
    left them (charges it queued, an import it uploaded) before pytest-django flushes the tables:
    TRUNCATE beside a settling worker can deadlock, and the flush then fails the test."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction", False)
    )
    if transactional and any(stack.workers[0].alive for stack in _started_stacks):
        wait_quiet()
