"""core/db: Django's per-request health check (`SELECT 1`) only for connections idle for more
than `RECENT` seconds, and a dead connection still replaced. Request boundaries are driven the
way Django's request_started/request_finished signals drive them."""

import time

import psycopg2
import pytest
from django.db import OperationalError, connection, transaction

from core.db import base as backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch):
    calls: list[bool] = []
    real = connection.is_usable

    def counting():
        usable = real()
        calls.append(usable)
        return usable

    monkeypatch.setattr(connection, "is_usable", counting)
    return calls


def _request():
    """One request: its start, one query, its end."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()


def test_a_connection_that_answered_moments_ago_is_not_checked_again(checks):
    _request()
    _request()
    _request()
    assert checks == []


def _terminate(pid: int) -> None:
    """PostgreSQL ends that session, as a restart or an idle-session timeout would."""
    admin = psycopg2.connect(**connection.get_connection_params())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    admin.close()
    time.sleep(0.2)


def test_an_idle_connection_is_checked_and_a_dead_one_replaced(checks):
    _request()
    connection._answered_at -= backend.RECENT + 1  # idle for a while
    _request()
    assert checks == [True]

    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)
    connection._answered_at -= backend.RECENT + 1
    _request()
    assert checks[-1] is False
    assert connection.connection.info.backend_pid != old_pid


def test_a_recent_connection_whose_backend_was_terminated_is_replaced_before_the_query(checks):
    """pg_terminate_backend, a failover or a shutdown makes the idle socket readable: the real
    check runs, fails, and the request gets a fresh connection instead of an error."""
    _request()
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)
    _request()  # within RECENT, and no error
    assert checks == [False]
    assert connection.connection.info.backend_pid != old_pid


def test_a_recent_connection_with_a_quiet_socket_skips_the_check(checks):
    _request()
    assert not connection._socket_has_news()
    _request()
    assert checks == []


def test_a_query_that_fails_on_a_dead_recent_connection_is_replaced_at_the_request_end(monkeypatch):
    """The race no check closes: the backend dies after the request started."""
    _request()
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)
    monkeypatch.setattr(connection, "_socket_has_news", lambda: False)

    connection.close_if_unusable_or_obsolete()  # the next request starts within RECENT: no check
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()  # its end: Django drops the broken connection
    _request()
    assert connection.connection.info.backend_pid != old_pid


def test_may_have_written_counts_autocommitted_writes_and_commits_of_transactions_that_wrote():
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert not connection.may_have_written
        with transaction.atomic():
            cursor.execute("SELECT 1 FOR UPDATE")
        assert not connection.may_have_written  # a transaction that only read committed nothing
        with pytest.raises(RuntimeError), transaction.atomic():
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
            assert not connection.may_have_written  # not committed yet
            raise RuntimeError
        assert not connection.may_have_written  # rolled back
        with transaction.atomic():
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
        assert connection.may_have_written
    connection.close_if_unusable_or_obsolete()  # a new request
    assert not connection.may_have_written
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_seller SET name = name WHERE false")  # autocommitted
    assert connection.may_have_written


def test_a_write_sent_to_a_backend_already_gone_does_not_count_as_written():
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        _terminate(connection.connection.info.backend_pid)
        with pytest.raises(OperationalError):
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
    assert not connection.may_have_written  # the backend had said goodbye before it was sent
    connection.close_if_unusable_or_obsolete()


def test_a_commit_sent_to_a_backend_already_gone_does_not_count_as_written():
    connection.close_if_unusable_or_obsolete()
    with pytest.raises(OperationalError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE core_seller SET name = name WHERE false")
        _terminate(connection.connection.info.backend_pid)  # while the transaction is open
    assert not connection.may_have_written  # the transaction died with its backend
    connection.close_if_unusable_or_obsolete()
