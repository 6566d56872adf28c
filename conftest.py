import pytest
import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.backends.signals import connection_created

from devstack.sandbox import SandboxProcess
from tests.support import SANDBOX_SECRET, WorkerStack, sandbox_options, started_stacks, wait_quiet


@pytest.fixture(scope="session")
def broker(django_db_setup):
    """The test Redis database, emptied of queued messages left by an earlier run."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    return client


@pytest.fixture(scope="session", autouse=True)
def session_sandbox(tmp_path_factory):
    """The sandbox provider every charge of the session is sent to, in this process (the tests'
    in-process fulfilment) and in the workers the tests start (tests/support.py passes it on)."""
    from providers import get_provider

    logs = tmp_path_factory.mktemp("sandbox")
    process = SandboxProcess(logs, db=logs / "sandbox.db", **sandbox_options()).start()
    settings.PROVIDER_URL = process.url
    settings.PROVIDER_CALLBACK_SECRET = SANDBOX_SECRET
    get_provider.cache_clear()
    yield process
    process.stop()


# The session's database blocker, for the reload after a transactional test's flush (below).
_session_db_blocker = []


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database with the house catalog committed once: each test's own transaction finds
    it there rather than loading it again (about 50 ms each, over hundreds of tests)."""
    from devstack.house_catalog import house_catalog_loaded, load_house_catalog

    with django_db_blocker.unblock():
        if not house_catalog_loaded():
            load_house_catalog()
    _session_db_blocker.append(django_db_blocker)
    yield
    _session_db_blocker.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a transactional test's flush emptied every table, the house catalog committed again
    for the tests that follow (the session's database stays up while a test follows)."""
    result = yield
    if nextitem is not None and _session_db_blocker and _transactional(item):
        from devstack.house_catalog import house_catalog_loaded, load_house_catalog

        with _session_db_blocker[0].unblock():
            if not house_catalog_loaded():
                load_house_catalog()
    return result


def _transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool({"transactional_db", "live_server"} & set(item.fixturenames)) or (
        marker is not None and marker.kwargs.get("transaction", False)
    )


@pytest.fixture(autouse=True)
def house_catalog(request):
    """Every test that uses the database sells from the house catalog (devstack/house_catalog.py):
    committed with the test database and after each transactional test's flush (above), loaded
    here only if a test began without it."""
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    )
    if not uses_db:
        return
    from devstack.house_catalog import house_catalog_loaded, load_house_catalog

    request.getfixturevalue("db")  # the database as the test asked for it (transactional wins)
    if not house_catalog_loaded():
        load_house_catalog()


@pytest.fixture(scope="session")
def shard_workers(session_sandbox, django_db_setup, django_db_blocker, broker, tmp_path_factory):
    """Real `celery worker` processes (the production command) consuming every shard, and beat."""
    stack = WorkerStack(tmp_path_factory.mktemp("workers")).start()
    started_stacks.append(stack)
    yield stack
    started_stacks.remove(stack)
    stack.stop()


@pytest.fixture
def workers(shard_workers):
    """Per test: the session's workers, restarted if an earlier test killed one."""
    shard_workers.ensure_running()
    return shard_workers


def _flush_outwaits_the_workers(sender, connection, **kwargs):
    """The tests' own connections wait 20 s, not PostgreSQL's 1 s, before they look for a deadlock.
    Between tests pytest-django's flush TRUNCATEs every table while the workers may still run a
    periodic task (a sweep, the reconciler, an audit); if the two deadlock, the backend whose wait
    reaches its deadlock_timeout first is the one rolled back. So it is the worker's transaction
    (a worker survives a deadlock and retries), not the flush, which would fail the test."""
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '20s'")
    except DatabaseError:
        pass  # only a superuser may set it (the tests' usual user): without, the flush waits 1 s as before


connection_created.connect(_flush_outwaits_the_workers, dispatch_uid="tests-flush-outwaits-the-workers")


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
    if transactional and any(stack.workers[0].alive for stack in started_stacks):
        wait_quiet()
