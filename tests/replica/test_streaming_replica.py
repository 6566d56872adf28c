"""Heavy reads (lists, the transaction export) against a real streaming replica.

Two halves. In the normal suite no replica is configured, and
`test_cases_against_a_streaming_replica_of_their_own_primary` makes a primary and a hot standby of
it (devstack/postgres.py), then runs this file again in a pytest process whose DATABASE_URL is
that primary and DATABASE_REPLICA_URL that standby: the test database pytest-django creates on the
primary reaches the standby by replication (in tests the replica alias mirrors default). With a
replica configured (that inner run, or a CI that brings its own), the cases run directly.

The cases prove where a read ran by pausing the standby's replay: a row committed on the primary
after the pause is missing from a list read on the replica, and present in the same list read on
the primary."""

import logging
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections, router
from django.test.utils import CaptureQueriesContext

from core.db import replica
from core.db.replica import PRIMARY, REPLICA
from devstack.postgres import Cluster, StreamingPair, server_bindir, wait_streaming, why_unavailable
from ledger.models import Charge
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.api.helpers import bearer
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit

HAS_REPLICA = "replica" in settings.DATABASES
STANDBY_DATA = os.environ.get("LEDGER_TEST_STANDBY_DATA")  # set by the runner: the cases may stop it
CASES_ON_THEIR_OWN_REPLICA = 3

needs_replica = pytest.mark.skipif(not HAS_REPLICA, reason="no DATABASE_REPLICA_URL: the runner test runs these")
on_both = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.mark.skipif(HAS_REPLICA, reason="a replica is configured: the cases run directly")
def test_cases_against_a_streaming_replica_of_their_own_primary():
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    pair = StreamingPair(server_bindir())
    try:
        pair.start()
        env = {
            **os.environ,
            "DATABASE_URL": pair.url(pair.primary_port, "ledger"),
            "DATABASE_REPLICA_URL": pair.url(pair.standby_port, "ledger"),
            "LEDGER_TEST_STANDBY_DATA": str(pair.standby.data),
            "LEDGER_TEST_STANDBY_PORT": str(pair.standby_port),
        }
        inner = subprocess.run(
            [sys.executable, "-m", "pytest", __file__, "-x", "-q", "-p", "no:cacheprovider"],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        pair.stop()
    report = inner.stdout[-8000:] + inner.stderr[-4000:]
    assert inner.returncode == 0, report
    passed = re.search(r"(\d+) passed", inner.stdout)
    assert passed and int(passed.group(1)) == CASES_ON_THEIR_OWN_REPLICA, report


@pytest.mark.skipif(HAS_REPLICA, reason="a replica is configured")
def test_without_a_replica_every_read_is_on_the_primary():
    assert replica.heavy_read_alias() == PRIMARY
    assert replica.read_heavy(lambda alias: alias) == PRIMARY
    assert list(replica.stream_heavy(lambda alias: iter([alias]))) == [PRIMARY]
    assert replica.replica_report() is None


# --- The cases: a replica is configured ----------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_measurement(settings):
    settings.DATABASE_REPLICA_MAX_LAG = 30.0
    replica.forget()
    yield
    replica.forget()


def _one(alias: str, sql: str, params=None):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _wait_for(condition, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def _wait_replayed() -> None:
    target = _one(PRIMARY, "SELECT pg_current_wal_flush_lsn()::text")
    _wait_for(lambda: _one(REPLICA, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]), "replay")


@contextmanager
def _replay_paused():
    _one(REPLICA, "SELECT pg_wal_replay_pause()")
    _wait_for(lambda: _one(REPLICA, "SELECT pg_get_wal_replay_pause_state() = 'paused'"), "the pause")
    try:
        yield
    finally:
        _one(REPLICA, "SELECT pg_wal_replay_resume()")


def _seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["seq"] for row in response.json()["results"]]


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _export_seqs(response) -> list[int]:
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    return [int(line.split(",")[2]) for line in lines[1:]]


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def _funded_seller():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100_000, admin)
    settle_seller(seller_id=seller.pk)  # entry 1
    return admin, seller


@needs_replica
def test_the_replica_mirrors_the_primary_in_tests_and_is_never_written_or_migrated():
    replica_db, default_db = settings.DATABASES[REPLICA], settings.DATABASES[PRIMARY]
    assert replica_db["ENGINE"] == default_db["ENGINE"] == "django.db.backends.postgresql"
    assert replica_db["TEST"]["MIRROR"] == PRIMARY and replica_db["NAME"] == default_db["NAME"]
    assert replica_db["OPTIONS"]["connect_timeout"] == 2
    assert router.db_for_write(Charge) == PRIMARY
    assert router.allow_migrate(REPLICA, "ledger") is False and router.allow_migrate(PRIMARY, "ledger")


@needs_replica
@on_both
def test_lists_read_the_replica_a_sellers_own_charge_the_primary_and_lag_sends_lists_back(settings):
    admin, seller = _funded_seller()
    api, admin_api = bearer(seller.user), bearer(admin)
    _wait_replayed()
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        assert _seqs(api.get("/api/v1/transactions/")) == [1]
    assert any("ledger_entry" in query["sql"] for query in on_replica.captured_queries)

    with _replay_paused():
        charge, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=1_000)
        settle_seller(seller_id=seller.pk)  # the charge's hold: entry 2, committed on the primary only
        # The standby received it (so it knows it is behind) and has not applied it.
        target = _one(PRIMARY, "SELECT pg_current_wal_flush_lsn()::text")
        _wait_for(lambda: _one(REPLICA, "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", [target]), "receipt")

        # Within DATABASE_REPLICA_MAX_LAG: lists and the export read the replica, which lacks it ...
        assert _seqs(api.get("/api/v1/transactions/")) == [1]
        assert _export_seqs(api.get("/api/v1/transactions/export/")) == [1]
        assert charge.pk not in _ids(api.get("/api/v1/charges/"))
        # ... while the seller polling its own charge reads the primary (read-your-writes).
        polled = api.get(f"/api/v1/charges/{charge.pk}/")
        assert polled.status_code == 200 and polled.json()["stage"] == "reserved", polled.content
        shown = admin_api.get("/api/v1/ops/queues/").json()["replica"]
        assert shown["heavy_reads"] == "replica" and 0 < shown["lag_seconds"] < 30, shown

        # Past the limit the same lists come from the primary, and on-call sees why.
        settings.DATABASE_REPLICA_MAX_LAG = 0.3
        _wait_for(lambda: replica.measure().seconds > 0.3, "lag over the limit")
        assert _seqs(api.get("/api/v1/transactions/")) == [2, 1]
        assert _export_seqs(api.get("/api/v1/transactions/export/")) == [2, 1]
        assert charge.pk in _ids(api.get("/api/v1/charges/"))
        shown = admin_api.get("/api/v1/ops/queues/").json()["replica"]
        assert shown["heavy_reads"] == "primary" and shown["lag_seconds"] > 0.3, shown
        assert shown["max_lag_seconds"] == 0.3 and shown["error"] is None
        metrics = admin_api.get("/api/v1/ops/metrics/").content.decode()
        assert _metric(metrics, "ledger_replica_lag_seconds") > 0.3
        assert _metric(metrics, "ledger_replica_up") == 1 and _metric(metrics, "ledger_replica_serving_reads") == 0

    # Replay resumed and caught up: lag 0 however long ago the primary last wrote, lists back on it.
    _wait_replayed()
    replica.forget()
    shown = admin_api.get("/api/v1/ops/queues/").json()["replica"]
    assert shown == {"lag_seconds": 0.0, "max_lag_seconds": 0.3, "heavy_reads": "replica", "error": None}
    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        assert _seqs(api.get("/api/v1/transactions/")) == [2, 1]
    assert on_replica.captured_queries
    assert_ledger_audit()


@needs_replica
@on_both
def test_lists_are_served_from_the_primary_while_the_replica_is_down(monkeypatch, caplog):
    if not STANDBY_DATA:
        pytest.skip("LEDGER_TEST_STANDBY_DATA unset: this run cannot stop its replica")
    admin, seller = _funded_seller()
    api, admin_api = bearer(seller.user), bearer(admin)
    _wait_replayed()
    assert _seqs(api.get("/api/v1/transactions/")) == [1]  # on the replica
    standby = Cluster(STANDBY_DATA)
    standby.stop()
    try:
        # Died within the second since the last measurement: the queries themselves meet it.
        with monkeypatch.context() as still_fine, caplog.at_level(logging.WARNING, logger="core.db.replica"):
            still_fine.setattr(replica, "current_lag", lambda: replica.ReplicaLag(0.0, None, time.monotonic()))
            assert _seqs(api.get("/api/v1/transactions/")) == [1]
            assert _export_seqs(api.get("/api/v1/transactions/export/")) == [1]
        assert caplog.text.count("heavy reads on the primary: the replica is unusable") == 2, caplog.text
        # Measured down (one failed connection, remembered for FAILED_TTL): all heavy reads on the primary.
        replica.forget()
        assert _export_seqs(api.get("/api/v1/transactions/export/")) == [1]
        for path in ("/api/v1/charges/", "/api/v1/deposits/", "/api/v1/charge-batches/"):
            assert api.get(path).status_code == 200, path
        shown = admin_api.get("/api/v1/ops/queues/").json()["replica"]
        assert shown["heavy_reads"] == "primary" and shown["lag_seconds"] is None and shown["error"], shown
        metrics = admin_api.get("/api/v1/ops/metrics/").content.decode()
        assert _metric(metrics, "ledger_replica_up") == 0 and _metric(metrics, "ledger_replica_serving_reads") == 0
        assert _metric(metrics, "ledger_replica_lag_seconds") is None
    finally:
        standby.start()
        wait_streaming(int(os.environ["LEDGER_TEST_STANDBY_PORT"]))
    # Back: once it streams and has caught up, the lists return to it (the next measurement).
    _wait_for(lambda: replica.replica_report()["heavy_reads"] == "replica", "the replica serving again")
    assert _seqs(api.get("/api/v1/transactions/")) == [1]
