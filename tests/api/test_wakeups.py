"""Coalesced wake-ups (workers/dispatch.py): one pending settle_shard task per shard is enough;
it reopens the shard's flag and takes the sellers that asked before it settles them, and a
wake-up inside a shard's cooldown is delayed to the cooldown's end. Observed through Celery's
publish signal and the real shard workers; exactness of balances under load is proven in
test_over_http.py."""

import time

import pytest
from celery.signals import before_task_publish

from ledger.models import Account
from ledger.services.charges import charge_submit
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled
from workers import dispatch
from workers.routing import shard_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]

PHONE = "+989121234567"


@pytest.fixture
def published():
    """(task name, kwargs, eta) of every task published meanwhile."""
    sent: list[tuple] = []

    def record(sender=None, body=None, headers=None, **_):
        kwargs = body[1] if isinstance(body, tuple) else body
        sent.append((sender, kwargs, (headers or {}).get("eta")))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def _keys(seller):
    flag, cooldown, dirty, _settles = dispatch._shard_keys(shard_for(seller.pk))
    return flag, cooldown, dirty


def _wait_flag_cleared(seller, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while dispatch._broker_redis().exists(_keys(seller)[0]):
        assert time.monotonic() < deadline, "no shard task reopened the wake-up flag"
        time.sleep(0.05)


def _funded_sellers_in_one_shard(count: int):
    admin, found = make_admin(), {}
    while True:
        seller = make_seller()
        group = found.setdefault(shard_for(seller.pk), [])
        group.append(seller)
        if len(group) == count:
            break
    for seller in group:
        request_and_approve(seller, 50_000, admin)
        wait_settled(seller.pk)
    _wait_flag_cleared(group[0])
    return group


def test_commits_of_a_shard_publish_one_wake_up_until_its_task_takes_them(workers, published):
    first, second = _funded_sellers_in_one_shard(2)
    flag, _cooldown, dirty = _keys(first)
    redis = dispatch._broker_redis()
    published.clear()

    # A shard task is pending (set as a publish would, but nothing is queued): commits of both
    # sellers only add them to the shard's set.
    redis.set(flag, 1, ex=dispatch.WAKE_FLAG_TTL)
    for seller in (first, second, first):
        charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=1_000)
    assert published == []
    assert {int(s) for s in redis.smembers(dirty)} == {first.pk, second.pk}

    # The task reopens the flag and takes the set before it settles: every charge is seen.
    dispatch.wake_shard(shard_for(first.pk))
    wait_settled(first.pk, timeout=30)
    wait_settled(second.pk, timeout=30)
    assert Account.objects.get(seller=first).balance == 48_000
    assert Account.objects.get(seller=second).balance == 49_000
    assert not redis.exists(flag) and not redis.exists(dirty)

    # With no task pending (and the cooldown over), the next commit publishes at once, once.
    redis.delete(_keys(first)[1])
    published.clear()
    charge_submit(seller_id=second.pk, phone_number=PHONE, amount=1_000)
    assert published == [("ledger.settle_shard", {"shard": shard_for(second.pk)}, None)]
    wait_settled(second.pk, timeout=30)
    assert Account.objects.get(seller=second).balance == 48_000
    assert_ledger_audit()


def test_a_wake_up_within_the_cooldown_is_delayed_to_its_end_and_still_settles(workers, published):
    [seller] = _funded_sellers_in_one_shard(1)
    redis = dispatch._broker_redis()
    published.clear()

    # As if a settle of this shard had just started (its task sets this when it takes the set).
    redis.set(_keys(seller)[1], 1, px=1500)
    started = time.monotonic()
    charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=1_000)
    charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=1_000)  # coalesced
    assert len(published) == 1 and published[0][2] is not None  # one wake-up, with a countdown
    wait_settled(seller.pk, timeout=30)
    assert time.monotonic() - started >= 1.0  # not before the cooldown's end
    assert Account.objects.get(seller=seller).balance == 48_000
    assert_ledger_audit()


def test_a_shards_first_settles_in_a_second_start_at_once_and_the_next_wait_out_the_cooldown(settings):
    settings.LEDGER_WAKE_BURST = 3
    shard = 97  # no worker consumes it: only this test takes its set
    keys = dispatch._shard_keys(shard)
    flag, cooldown, _dirty, settles = keys
    redis = dispatch._broker_redis()
    redis.delete(*keys)

    def claim_then_take() -> int:
        """What a commit's claim finds (0: publish at once, else the countdown in ms), then the
        shard task's take."""
        left_ms = dispatch._claim_wake_up(keys=keys, args=[1, dispatch.WAKE_FLAG_TTL])
        assert dispatch.take_dirty_sellers(shard) == [1]
        return left_ms

    try:
        assert [claim_then_take() for _ in range(3)] == [0, 0, 0]  # the burst: no cooldown started
        assert not redis.exists(cooldown)
        assert claim_then_take() == 0  # the fourth take of the second starts the cooldown
        left_ms = claim_then_take()
        assert 0 < left_ms <= settings.LEDGER_WAKE_COOLDOWN * 1000
        redis.delete(cooldown)
        time.sleep(max(redis.pttl(settles), 0) / 1000 + 0.05)  # the next second: a burst again
        assert [claim_then_take() for _ in range(3)] == [0, 0, 0]
        assert not redis.exists(flag)
    finally:
        redis.delete(*keys)


def test_the_sweepers_wake_up_settles_one_seller_whatever_the_shard_flag_says(workers, published):
    [seller] = _funded_sellers_in_one_shard(1)
    flag, _cooldown, dirty = _keys(seller)
    redis = dispatch._broker_redis()
    # A shard task was published and lost (a flushed broker): the flag says pending.
    redis.set(flag, 1, ex=dispatch.WAKE_FLAG_TTL)
    charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=1_000)
    dispatch.wake_seller(seller.pk)  # what the sweeper sends for a seller with stale intents
    wait_settled(seller.pk, timeout=30)
    assert Account.objects.get(seller=seller).balance == 49_000
    redis.delete(flag, dirty)
    assert_ledger_audit()
