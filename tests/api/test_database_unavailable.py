"""A request that finds the database gone before it wrote anything answers 503 with Retry-After
(nothing was recorded, so retrying is safe); one that may have written does not pretend so."""

import psycopg2.errors
import pytest
from django.db import OperationalError, connection

from core.db import writes
from core.errors import api_exception_handler, nothing_recorded_before
from ledger.models import Charge
from tests.api.helpers import bearer
from tests.core.test_db_writes import _terminate
from tests.factories import client_for, make_seller

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_request_whose_connection_died_unseen_answers_503_with_retry_after(monkeypatch):
    seller = make_seller()
    api = client_for(seller.user)
    assert api.get("/api/v1/deposits/").status_code == 200
    _terminate(connection.connection.info.backend_pid)
    # The race no check closes: the backend dies once the request's health check has passed.
    monkeypatch.setattr(connection, "is_usable", lambda: True)

    connection.close_if_unusable_or_obsolete()  # request_started, which Django's test client skips
    response = api.get("/api/v1/deposits/")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "service_unavailable"
    monkeypatch.undo()
    connection.close_if_unusable_or_obsolete()  # request_finished: the broken connection is dropped
    assert api.get("/api/v1/deposits/").status_code == 200  # a fresh connection next time


def _request_that_wrote(rf, key=None):
    """A request whose tracker saw a write, as DatabaseWritesMiddleware installs it."""
    request = rf.post("/api/v1/charges/")
    request.database_writes = writes.WriteTracker()
    if key:
        request.idempotency_key = key
    with connection.execute_wrapper(request.database_writes), connection.cursor() as cursor:
        cursor.execute("UPDATE core_seller SET name = name WHERE false")
    return request


def test_an_error_after_a_possible_write_is_not_called_safe_to_retry(rf):
    error = OperationalError("server closed the connection unexpectedly")
    untouched = rf.get("/api/v1/deposits/")
    untouched.database_writes = writes.WriteTracker()
    assert nothing_recorded_before(error, untouched)
    assert not nothing_recorded_before(error, _request_that_wrote(rf))
    assert not nothing_recorded_before(error, None)  # nothing watched: unknown
    assert not nothing_recorded_before(ValueError("not a database error"), untouched)


def test_a_connection_lost_after_a_possible_write_answers_outcome_unknown(rf):
    error = OperationalError("server closed the connection unexpectedly")
    lost = api_exception_handler(error, {"request": _request_that_wrote(rf)})
    assert lost.status_code == 500 and lost.data["code"] == "outcome_unknown"
    assert "Idempotency-Key" in lost.data["detail"] and "Retry-After" not in lost


@pytest.mark.parametrize("key", ["order-1", None])
def test_a_charge_whose_connection_died_under_its_insert(monkeypatch, key):
    """The connection dies once the charge's INSERT is sent: it may have committed. With an
    Idempotency-Key the retry is safe and answers the one charge, so the answer is the outage's
    503 with Retry-After; without one it stays 500 `outcome_unknown` (a blind retry could charge
    twice)."""
    seller = make_seller()
    api = bearer(seller.user)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    body = {"phone_number": "09121234567", "amount": 1_000}
    assert api.post("/api/v1/charges/", body).status_code == 202  # warm: the seller known, the statement prepared
    connection.close_if_unusable_or_obsolete()  # request_started, which Django's test client skips

    def die_under_the_insert(execute, sql, params, many, context):
        if sql.startswith("EXECUTE ledger_charge_record"):
            _terminate(connection.connection.info.backend_pid)
        return execute(sql, params, many, context)

    # The INSERT is sent before the backend's goodbye arrives: it counts as a possible write.
    monkeypatch.setattr(writes, "session_ended", lambda db: False)
    with connection.execute_wrapper(die_under_the_insert):
        response = api.post("/api/v1/charges/", {**body, "amount": 2_000}, **headers)
    wrote = response.wsgi_request.database_writes.may_have_written
    monkeypatch.undo()
    connection.close_if_unusable_or_obsolete()  # request_finished: the broken connection is dropped

    assert wrote
    if key:
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "1"
        assert response.json()["code"] == "service_unavailable"
        assert "same Idempotency-Key" in response.json()["detail"]
    else:
        assert response.status_code == 500 and response.json()["code"] == "outcome_unknown"
        assert "Retry-After" not in response
    retried = api.post("/api/v1/charges/", {**body, "amount": 2_000}, **headers)
    assert retried.status_code == 202  # the lost attempt recorded nothing here: the retry records it, once
    assert Charge.objects.filter(seller=seller).count() == 2


def _server_ended(sqlstate: str) -> OperationalError:
    """What Django raises when libpq reports the server's own message for the end of the session
    (`FATAL: terminating connection due to administrator command`, SQLSTATE 57P01, for a
    pg_terminate_backend or a fast shutdown): the libpq here reports only the closed socket, others
    pass the message on. psycopg2 sets `pgcode` from the server's answer; its pickling state here."""
    cause = psycopg2.errors.lookup(sqlstate)("terminating connection due to administrator command")
    cause.__setstate__({"pgcode": sqlstate, "pgerror": str(cause)})
    error = OperationalError(*cause.args)
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("sqlstate", ["57P01", "57P02", "08006"])
def test_a_session_the_server_ended_after_a_possible_write_is_a_lost_connection(rf, sqlstate):
    keyed = api_exception_handler(_server_ended(sqlstate), {"request": _request_that_wrote(rf, key="order-1")})
    assert keyed.status_code == 503 and keyed["Retry-After"] == "1"
    unkeyed = api_exception_handler(_server_ended(sqlstate), {"request": _request_that_wrote(rf)})
    assert unkeyed.status_code == 500 and unkeyed.data["code"] == "outcome_unknown"


def test_an_error_the_server_reports_on_a_live_session_is_not_a_lost_connection(rf):
    request = _request_that_wrote(rf)
    assert api_exception_handler(_server_ended("40P01"), {"request": request}) is None  # a deadlock: a defect
