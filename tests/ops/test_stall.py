"""A stalled shard is visible: ops/queues and the metrics give each shard its oldest waiting
intent's age and a `stalled` verdict (work older than LEDGER_STALL_AFTER and nothing settled on
the shard for as long), while depth and consumers may still look healthy."""

import re
import time

import pytest
from django.conf import settings as django_settings

from ledger.services.charges import charge_submit
from ops import metrics
from ops.report import queue_report
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _row(report: dict, queue: str) -> dict:
    return next(row for row in report["queues"] if row["queue"] == queue)


def test_a_shard_whose_worker_was_killed_is_reported_stalled_until_it_settles_again(workers, settings):
    settings.LEDGER_STALL_AFTER = 1.0
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 10_000, admin)
    wait_settled(seller.pk, timeout=30)
    queue = f"ledger.shard.{seller.pk % django_settings.LEDGER_SHARDS}"
    row = _row(queue_report(), queue)
    assert not row["stalled"] and row["oldest_waiting_age_seconds"] == 0 and row["waiting_sellers"] == 0
    assert row["seconds_since_settle"] is not None and row["seconds_since_settle"] <= 30

    worker = workers.worker_for_seller(seller.pk)
    worker.kill()  # SIGKILL: its heartbeat lingers, so it still counts as a consumer for seconds
    try:
        charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=1_000)
        time.sleep(2.5)  # past LEDGER_STALL_AFTER, in whole seconds of the Redis clock
        report = queue_report()
        row = _row(report, queue)
        assert row["stalled"], row
        assert row["oldest_waiting_age_seconds"] >= 1.0 and row["waiting_sellers"] == 1
        assert not any(r["stalled"] for r in report["queues"] if r["queue"] != queue), report["queues"]

        text = metrics.render().decode()
        assert re.search(rf'^ledger_shard_stalled\{{queue="{re.escape(queue)}"\}} 1\.0$', text, re.M), text
        age = re.search(
            rf'^ledger_shard_oldest_waiting_intent_age_seconds\{{queue="{re.escape(queue)}"\}} (\S+)$', text, re.M
        )
        assert age and float(age.group(1)) >= 1.0
        answered = client_for(admin).get("/api/v1/ops/queues/").json()
        assert _row(answered, queue)["stalled"] is True
    finally:
        workers.ensure_running()

    wait_settled(seller.pk, timeout=30)
    row = _row(queue_report(), queue)
    assert not row["stalled"] and row["oldest_waiting_age_seconds"] == 0
    assert row["seconds_since_settle"] <= 5
    assert_ledger_audit()
