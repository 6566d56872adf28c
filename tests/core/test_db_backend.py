"""core/db: Django's per-request health check (`SELECT 1`) only for connections idle for more
than `RECENT` seconds, and a dead connection still replaced. Request boundaries are driven the
way Django's request_started/request_finished signals drive them."""

import time

import psycopg2
import pytest
from django.db import OperationalError, connection

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


def test_a_query_that_fails_on_a_dead_recent_connection_is_replaced_at_the_request_end():
    _request()
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)

    connection.close_if_unusable_or_obsolete()  # the next request starts within RECENT: no check
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()  # its end: Django drops the broken connection
    _request()
    assert connection.connection.info.backend_pid != old_pid
