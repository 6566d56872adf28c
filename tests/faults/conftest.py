import pytest

from tests.faults.stack import FaultStack, PrivateRedis
from tests.support import stop_session_workers


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
    """Per test: the session's fault stack, with anything an earlier test killed started again."""
    fault_stack.ensure_running()
    return fault_stack
