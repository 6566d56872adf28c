import pytest

from tests.faults.stack import FaultStack, PrivateRedis
from tests.support import stop_session_workers, wait_quiet


@pytest.fixture(scope="package")
def fault_stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """Package-scoped: its workers watch and recover every seller of the test database, so it must
    be gone before the tests of other packages run their own workers on it."""
    log_dir = tmp_path_factory.mktemp("faults")
    stop_session_workers()
    with django_db_blocker.unblock():
        stack = FaultStack(log_dir, PrivateRedis(log_dir))
        try:
            stack.start()
        except BaseException:
            stack.stop()
            raise
    yield stack
    stack.stop()


@pytest.fixture
def stack(fault_stack):
    """Per test: the session's fault stack, with anything an earlier test killed started again.

    After the test, the stack is whole again and has finished what the test left it before
    pytest-django's flush: a worker restarted by the test (or here) recovers its charges at once,
    and TRUNCATE beside that recovery can deadlock and fail the test's teardown."""
    fault_stack.ensure_running()
    yield fault_stack
    fault_stack.ensure_running()
    wait_quiet()
