"""Faults: a shard worker SIGKILLed mid-backlog and a flushed broker lose nothing and apply
nothing twice. Real worker and beat processes; the sweeper (beat) is what recovers."""

import time

import pytest
from django.db import transaction

from ledger import events
from ledger.models import Account, Charge, Entry
from ledger.services.charges import charge_submit
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _queue_backlog(seller, count: int, amount: int) -> None:
    """Queue `count` charges in one transaction with one wake-up, as a batch import does."""
    with transaction.atomic():
        Charge.objects.bulk_create(
            [Charge(seller=seller, phone_number="+989121234567", amount=amount) for _ in range(count)],
            batch_size=5000,
        )
        events.intents_recorded(seller_id=seller.pk)


def _settled(seller) -> int:
    """Charges the settle has taken: reserved (sent to the provider next) or final."""
    return Charge.objects.filter(seller=seller).exclude(stage="queued").count()


def test_sigkill_mid_backlog_then_restart_settles_every_charge_exactly_once(workers):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 10_000_000, admin)
    wait_settled(seller.pk)
    # Every one of them is then topped up by the sandbox: enough for several settle batches
    # (LEDGER_SETTLE_BATCH_SIZE), so the kill lands mid-backlog, and no more.
    total = 8_000
    _queue_backlog(seller, total, 100)
    worker = workers.worker_for_seller(seller.pk)

    deadline = time.monotonic() + 60
    while _settled(seller) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.kill()  # SIGKILL to the whole process group: no cleanup, no ack
    settled_at_kill = _settled(seller)
    assert 0 < settled_at_kill < total, "the kill must land in the middle of the backlog"

    time.sleep(1)
    assert _settled(seller) == settled_at_kill  # nothing moves while the shard has no worker
    workers.ensure_running()
    wait_settled(seller.pk, timeout=180)

    assert Charge.objects.filter(seller=seller, status="succeeded").count() == total
    assert Entry.objects.filter(seller=seller, kind="charge").count() == total
    assert Account.objects.get(seller=seller).balance == 10_000_000 - total * 100
    assert_ledger_audit()


def test_flushed_broker_loses_no_charge(workers, broker):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 1_000_000, admin)
    wait_settled(seller.pk)
    worker = workers.worker_for_seller(seller.pk)
    worker.stop()  # the wake-ups now wait in Redis...

    for _ in range(50):
        charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=1_000)
    broker.flushdb()  # ...and are lost with it
    assert Charge.objects.filter(seller=seller, status="queued").count() == 50

    workers.ensure_running()
    wait_settled(seller.pk, timeout=60)  # only the sweeper can have woken the seller

    assert Charge.objects.filter(seller=seller, status="succeeded").count() == 50
    assert Account.objects.get(seller=seller).balance == 1_000_000 - 50 * 1_000
    assert_ledger_audit()
