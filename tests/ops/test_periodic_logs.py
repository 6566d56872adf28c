"""The project's own periodic tasks (the beat schedule of config/settings/base.py) log at INFO or
above only when they did something: a run that found nothing to do logs at DEBUG or not at all,
so an idle `make up` console stays still (tests/ops/test_quiet_console.py has the processes)."""

import logging

import pytest

from ledger.services.settlement import settle_seller
from notifications.tasks import prune_events_task, sweep_task
from tests.factories import make_admin, make_seller, request_and_approve
from workers.tasks import (
    audit_task,
    reconcile_fulfilment_task,
    resume_stalled_imports_task,
    settle_shard_task,
    sweep_stale_sellers_task,
)

pytestmark = pytest.mark.django_db
PROJECT = ("workers", "ledger", "notifications", "core")


def _said(caplog, level: int) -> list[str]:
    return [
        f"{r.levelname} {r.name} {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= level and r.name.split(".")[0] in PROJECT
    ]


def test_periodic_tasks_that_find_nothing_to_do_say_nothing_at_info(caplog, settings):
    settings.NOTIFICATIONS_EVENTS = False  # nothing to fan out either
    # Work an earlier test's processes may have left committed: settled here, inside this test's
    # transaction (rolled back after it), so the runs below meet an idle ledger.
    for shard in range(settings.LEDGER_SHARDS):
        settle_shard_task(shard, recover=True)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    make_seller()  # a seller with no entry: the audit's rolling slice has someone to look at
    for task in (
        sweep_stale_sellers_task,
        resume_stalled_imports_task,
        reconcile_fulfilment_task,
        sweep_task,
        prune_events_task,
        audit_task,
    ):
        task()
    settle_shard_task(0, recover=True)  # a worker's start-up: one per shard, usually with no one waiting

    assert _said(caplog, logging.INFO) == []
    quiet = _said(caplog, logging.DEBUG)
    assert any("ledger audit: 0 breaches" in line for line in quiet), quiet
    assert any("pruned events" in line for line in quiet), quiet
    assert any("recovering shard=0: 0 sellers waiting" in line for line in quiet), quiet


def test_the_audit_says_at_info_what_it_checked_first_and_then_no_more(caplog):
    seller = make_seller()
    request_and_approve(seller, 1_000, make_admin())
    settle_seller(seller_id=seller.pk)
    caplog.set_level(logging.DEBUG)

    audit_task()

    [line] = [line for line in _said(caplog, logging.INFO) if "ledger audit" in line]
    assert line.startswith("INFO workers.tasks ledger audit: 0 breaches"), line

    caplog.clear()
    audit_task()  # nothing new since: it only re-verifies its rolling slice
    assert [line for line in _said(caplog, logging.INFO) if "ledger audit" in line] == []
    assert any("ledger audit: 0 breaches" in line for line in _said(caplog, logging.DEBUG))
