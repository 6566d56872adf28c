"""ops/queues and ops/metrics against real shard worker processes: a stopped worker's shard keeps
its depth and shows no consumer, in the API and in the Prometheus metrics."""

import re
import time

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from ledger.models import Account, Charge
from tests.factories import client_for, make_admin, make_seller, make_staff, request_and_approve
from tests.support import assert_ledger_audit, wait_settled
from workers.heartbeat import live_workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _shard(report: dict, shard: int) -> dict:
    return next(row for row in report["queues"] if row["shard"] == shard)


def _metric(text: str, name: str, queue: str) -> float:
    match = re.search(rf'^{name}\{{queue="{re.escape(queue)}"\}} (\S+)$', text, re.M)
    assert match, f"{name} for {queue} missing from:\n{text}"
    return float(match.group(1))


def test_stopped_shard_worker_shows_depth_and_no_consumer(workers, monkeypatch):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100_000, admin)
    wait_settled(seller.pk, timeout=30)
    shard = seller.pk % settings.LEDGER_SHARDS
    queue = f"ledger.shard.{shard}"
    admin_api = client_for(admin)

    before = admin_api.get("/api/v1/ops/queues/").json()
    assert [row["queue"] for row in before["queues"]] == [f"ledger.shard.{k}" for k in range(settings.LEDGER_SHARDS)]
    assert all(row["consumers"] >= 1 for row in before["queues"]), before

    stopped = workers.worker_for_seller(seller.pk)
    stopped_name = next(host for host, queues in live_workers().items() if queue in queues)
    call_command("workerhealth", name=stopped_name)  # the container health check: alive
    stopped.stop()  # warm shutdown: the worker withdraws its heartbeat at once
    with pytest.raises(CommandError, match="has not announced itself"):
        call_command("workerhealth", name=stopped_name)
    try:
        response = client_for(seller.user).post(
            "/api/v1/charges/", {"phone_number": "09121234567", "amount": 30_000}, format="json"
        )
        assert response.status_code == 202, response.content

        report = admin_api.get("/api/v1/ops/queues/").json()
        row = _shard(report, shard)
        assert row["depth"] >= 1 and row["consumers"] == 0 and row["workers"] == [], row
        live_shards = [k for k in range(settings.LEDGER_SHARDS) if workers.workers[k % len(workers.workers)].alive]
        assert live_shards and all(_shard(report, k)["consumers"] >= 1 for k in live_shards), report
        assert report["broker"] == "ok"
        assert any(
            s["seller"] == seller.pk and s["queue"] == queue and s["waiting"] == 1 for s in report["oldest_waiting"]
        ), report["oldest_waiting"]

        text = admin_api.get("/api/v1/ops/metrics/").content.decode()
        assert _metric(text, "ledger_queue_depth", queue) >= 1
        assert _metric(text, "ledger_queue_consumers", queue) == 0
        assert re.search(r'^ledger_charges\{status="queued"\} [1-9]', text, re.M), text
    finally:
        workers.ensure_running()

    wait_settled(seller.pk, timeout=30)
    assert Charge.objects.get(seller=seller).status == Charge.Status.SUCCEEDED
    assert Account.objects.get(seller=seller).balance == 70_000
    assert any(queue in queues for queues in live_workers().values())
    assert_ledger_audit()


def test_ops_endpoints_are_for_admins_and_the_metrics_token_only(monkeypatch):
    seller, auditor = make_seller(), make_staff("auditor")
    assert client_for(seller.user).get("/api/v1/ops/queues/").status_code == 403
    assert client_for(auditor).get("/api/v1/ops/queues/").status_code == 403
    anonymous = client_for(None)
    assert anonymous.get("/api/v1/ops/queues/").status_code == 401
    assert anonymous.get("/api/v1/ops/metrics/").status_code == 401
    assert client_for(seller.user).get("/api/v1/ops/metrics/").status_code == 403

    monkeypatch.setenv("METRICS_TOKEN", "scrape-token-for-tests-0123456789")
    ok = anonymous.get("/api/v1/ops/metrics/", HTTP_AUTHORIZATION="Bearer scrape-token-for-tests-0123456789")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")
    assert "ledger_queue_depth" in ok.content.decode()
    wrong = anonymous.get("/api/v1/ops/metrics/", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401


def test_metrics_report_the_last_periodic_audit(workers):
    from django_celery_results.models import TaskResult

    from workers.tasks import audit_task

    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    wait_settled(seller.pk, timeout=30)
    result = audit_task.apply_async()  # what beat sends, to the default queue a real worker consumes
    deadline = time.monotonic() + 30
    while not TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists():
        assert time.monotonic() < deadline, "the audit task never stored its result"
        time.sleep(0.2)

    text = client_for(admin).get("/api/v1/ops/metrics/").content.decode()
    assert re.search(r"^ledger_audit_ok 1\.0$", text, re.M), text
    assert re.search(r"^ledger_audit_breaches 0\.0$", text, re.M), text
    assert re.search(r"^ledger_audit_last_run_timestamp_seconds \d", text, re.M), text
    assert re.search(r'^ledger_deposits\{status="approved"\} [1-9]', text, re.M), text
    settled = re.search(r"^ledger_settled_intents_total (\S+)$", text, re.M)
    assert settled and float(settled.group(1)) >= 1, text
