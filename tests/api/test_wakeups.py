"""Coalesced wake-ups (workers/dispatch.py): one pending wake-up per seller is enough, and the
worker re-opens the gate just before it drains. Observed through Celery's publish signal and the
real shard workers; exactness of balances under load is proven in test_over_http.py."""

import time

import pytest
from celery.signals import before_task_publish

from ledger.models import Account
from ledger.services.charges import charge_submit
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled
from workers import dispatch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


@pytest.fixture
def published():
    sent: list[dict] = []

    def record(sender=None, body=None, headers=None, **_):
        if sender == "ledger.settle_seller":
            sent.append(body[1] if isinstance(body, tuple) else body)

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def _flag_set(seller_id: int) -> bool:
    return bool(dispatch._broker_redis().exists(dispatch._wake_flag(seller_id)))


def _wait_flag_cleared(seller_id: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _flag_set(seller_id):
        assert time.monotonic() < deadline, "the worker never cleared the wake-up flag"
        time.sleep(0.05)


def test_commits_publish_one_wake_up_until_the_worker_starts_it(workers, published):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 50_000, admin)
    wait_settled(seller.pk)
    _wait_flag_cleared(seller.pk)
    published.clear()

    # A wake-up is pending (set as a publish would, but nothing is queued): commits stay quiet.
    dispatch._broker_redis().set(dispatch._wake_flag(seller.pk), 1, ex=dispatch.WAKE_FLAG_TTL)
    for _ in range(3):
        charge_submit(seller=seller, phone_number="+989121234567", amount=1_000)
    assert published == [] and _flag_set(seller.pk)

    # The sweeper's and the task's own wake-ups always publish; the worker clears the flag first,
    # and the drain that follows sees the three charges.
    dispatch.wake_seller(seller.pk)
    _wait_flag_cleared(seller.pk)
    wait_settled(seller.pk, timeout=30)
    assert Account.objects.get(seller=seller).balance == 47_000

    # With no wake-up pending, the next commit publishes again, exactly once.
    published.clear()
    charge_submit(seller=seller, phone_number="+989121234567", amount=1_000)
    assert len(published) == 1
    wait_settled(seller.pk, timeout=30)
    assert Account.objects.get(seller=seller).balance == 46_000
    assert_ledger_audit()


def test_a_wake_up_within_the_cooldown_is_delayed_to_its_end_and_still_settles(workers):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 50_000, admin)
    wait_settled(seller.pk)
    _wait_flag_cleared(seller.pk)
    etas: list = []

    def record(sender=None, headers=None, **_):
        if sender == "ledger.settle_seller":
            etas.append((headers or {}).get("eta"))

    before_task_publish.connect(record, weak=False)
    try:
        # As if a settle of this seller had just started (the worker sets this at task_prerun).
        dispatch._broker_redis().set(dispatch._cooldown_key(seller.pk), 1, px=1500)
        started = time.monotonic()
        charge_submit(seller=seller, phone_number="+989121234567", amount=1_000)
        charge_submit(seller=seller, phone_number="+989121234567", amount=1_000)  # coalesced
        assert len(etas) == 1 and etas[0] is not None  # one wake-up, published with a countdown
        wait_settled(seller.pk, timeout=30)
        assert time.monotonic() - started >= 1.0  # not before the cooldown's end
    finally:
        before_task_publish.disconnect(record)

    # Outside a cooldown the wake-up is immediate.
    dispatch._broker_redis().delete(dispatch._cooldown_key(seller.pk))
    _wait_flag_cleared(seller.pk)
    etas.clear()
    before_task_publish.connect(record, weak=False)
    try:
        charge_submit(seller=seller, phone_number="+989121234567", amount=1_000)
    finally:
        before_task_publish.disconnect(record)
    assert etas == [None]
    wait_settled(seller.pk, timeout=30)
    assert Account.objects.get(seller=seller).balance == 47_000
    assert_ledger_audit()
