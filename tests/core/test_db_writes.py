"""core/db/writes.py: what a request may have written, watched through Django's
`connection.execute_wrapper()`; and stale connections replaced by Django's own
`CONN_HEALTH_CHECKS`. Request boundaries are driven the way Django's request_started and
request_finished signals drive them (the test client skips them)."""

import time

import psycopg2
import pytest
from django.db import OperationalError, connection, transaction
from django.test import RequestFactory

from core.db import writes
from core.db.prepared import PreparedStatement

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate(pid: int) -> None:
    """PostgreSQL ends that session, as a restart, a failover or an idle-session timeout would."""
    admin = psycopg2.connect(**connection.get_connection_params())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    admin.close()
    time.sleep(0.2)


def _request(sql: str = "SELECT 1") -> None:
    """One request: its start, one statement, its end."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close_if_unusable_or_obsolete()


def test_health_checks_are_on_for_every_database(settings):
    assert all(db["CONN_HEALTH_CHECKS"] for db in settings.DATABASES.values())
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def test_a_request_on_a_connection_whose_backend_was_terminated_gets_a_fresh_one():
    _request()
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)
    _request()  # Django's check before the first query replaces it: no error
    assert connection.connection.info.backend_pid != old_pid


def _tracked(*statements: str) -> writes.WriteTracker:
    tracker = writes.WriteTracker()
    with connection.execute_wrapper(tracker), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    return tracker


def test_reads_are_not_writes_and_anything_else_is():
    assert not _tracked("SELECT 1", "SHOW server_version", "SET statement_timeout = 0").may_have_written
    assert _tracked("UPDATE core_seller SET name = name WHERE false").may_have_written
    assert _tracked("WITH x AS (DELETE FROM core_seller WHERE false RETURNING 1) SELECT 1").may_have_written


def test_a_prepared_select_is_a_read_and_any_other_prepared_statement_a_write():
    reads = PreparedStatement("test_writes_read", "SELECT name FROM core_seller WHERE id = $1", ["bigint"])
    writes_ = PreparedStatement("test_writes_write", "UPDATE core_seller SET name = name WHERE id = $1", ["bigint"])
    for statement, written in ((reads, False), (writes_, True)):
        tracker = writes.WriteTracker()
        with connection.execute_wrapper(tracker), connection.cursor() as cursor:
            statement.execute(cursor, [0])
        assert tracker.may_have_written is written, statement.name
    assert _tracked("EXECUTE test_writes_write (0)").may_have_written  # by its name, not by the word EXECUTE
    assert not _tracked("EXECUTE test_writes_read (0)").may_have_written


def test_a_write_in_a_transaction_counts_when_sent_committed_or_not():
    """COMMIT and ROLLBACK pass no execute wrapper: a sent write counts whatever follows, the safe side."""
    tracker = writes.WriteTracker()
    with connection.execute_wrapper(tracker):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FOR UPDATE")
        assert not tracker.may_have_written  # a transaction that only read
        with pytest.raises(RuntimeError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
            raise RuntimeError
        assert tracker.may_have_written


def test_a_write_sent_to_a_backend_already_gone_does_not_count():
    tracker = writes.WriteTracker()
    with connection.execute_wrapper(tracker), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        _terminate(connection.connection.info.backend_pid)
        with pytest.raises(OperationalError):
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
    assert not tracker.may_have_written  # the backend had said goodbye before it was sent
    connection.close_if_unusable_or_obsolete()


def test_each_request_gets_its_own_tracker_installed_only_while_it_runs():
    seen = []

    def view(request):
        seen.append((request.database_writes, list(connection.execute_wrappers)))

    middleware = writes.DatabaseWritesMiddleware(view)
    middleware(RequestFactory().get("/"))
    middleware(RequestFactory().get("/"))
    assert [wrappers for _tracker, wrappers in seen] == [[seen[0][0]], [seen[1][0]]]
    assert seen[0][0] is not seen[1][0]
    assert not connection.execute_wrappers
