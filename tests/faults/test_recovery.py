"""Each recovery defect reproduced on its own, against the production-mode stack of the fault
suite (production settings: the sweeper wakes sellers only after LEDGER_SWEEP_AFTER=15 s, so
every recovery here within a few seconds is the fix's, not the sweeper's)."""

import time

import pytest
import requests
from django.db import close_old_connections

from ledger import events
from ledger.fulfilment.service import fulfil_charges
from ledger.models import Charge, Deposit
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from providers import get_provider
from tests.factories import make_admin, make_seller
from tests.faults.stack import WORKER_READY
from tests.faults.suite import _login, _with_production_hash
from tests.support import assert_ledger_audit, wait_settled
from workers import dispatch
from workers.routing import shard_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


class Seller:
    def __init__(self, stack):
        self.stack = stack
        self.seller = make_seller()
        _with_production_hash(self.seller.user)
        self.headers = {"Authorization": f"Bearer {_login(stack.url, self.seller.user.username)}"}
        self.shard = shard_for(self.seller.pk)
        self.keys = dispatch._shard_keys(self.shard)  # flag, cooldown, dirty set, settles this second

    def deposit(self, amount: int) -> int:
        response = requests.post(
            f"{self.stack.url}/api/v1/deposits/", json={"amount": amount}, headers=self.headers, timeout=10
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def charge(self, amount: int = 100) -> requests.Response:
        return requests.post(
            f"{self.stack.url}/api/v1/charges/",
            json={"phone_number": "09121234567", "amount": amount},
            headers=self.headers,
            timeout=10,
        )


@pytest.fixture
def admin_headers(stack):
    admin = _with_production_hash(make_admin())
    return {"Authorization": f"Bearer {_login(stack.url, admin.username)}"}


def _funded(stack, admin_headers) -> Seller:
    seller = Seller(stack)
    deposit_id = seller.deposit(1_000_000)
    response = requests.post(f"{stack.url}/api/v1/deposits/{deposit_id}/approve/", headers=admin_headers, timeout=10)
    assert response.status_code == 202, response.text
    wait_settled(seller.seller.pk, timeout=30)
    return seller


def _settled_within(seller: Seller, seconds: float) -> float:
    started = time.monotonic()
    wait_settled(seller.seller.pk, timeout=seconds)
    return time.monotonic() - started


def test_a_wake_up_claimed_by_a_web_process_that_died_before_publishing_is_published_anyway(stack, admin_headers):
    seller = _funded(stack, admin_headers)
    # What a web process SIGKILLed between its claim and its publish leaves: the shard's flag.
    stack.broker().set(seller.keys[0], 1, ex=dispatch.WAKE_FLAG_TTL)
    assert seller.charge().status_code == 202  # its claim finds the flag: it publishes nothing
    # No commit follows: the flag expires (WAKE_FLAG_TTL), and the shard worker's watch publishes
    # the task within a second of that.
    assert _settled_within(seller, 6) <= 6


def test_a_worker_killed_holding_a_countdown_wake_up_settles_its_shard_when_back(stack, admin_headers):
    seller = _funded(stack, admin_headers)
    # As if the shard had just been settled: the next claim publishes its task with a countdown,
    # which the worker reserves (unacknowledged) until it is due.
    stack.broker().set(seller.keys[1], 1, px=1500)
    assert seller.charge().status_code == 202
    time.sleep(0.5)
    worker = stack.worker_for_shard(seller.shard)
    worker.kill()  # the reserved message is invisible to anyone for the visibility timeout (600 s)
    worker.start(ready_marker=" ready.")
    assert _settled_within(seller, 5) <= 5  # the restarted worker recovers its shards


def test_a_shard_task_killed_after_taking_its_sellers_leaves_none_behind(stack, admin_headers):
    seller = _funded(stack, admin_headers)
    worker = stack.worker_for_shard(seller.shard)
    worker.kill()
    assert seller.charge().status_code == 202
    # The worker that died had taken the seller from the shard's set: nothing in Redis names it.
    stack.broker().delete(*seller.keys)
    worker.start(ready_marker=" ready.")
    assert _settled_within(seller, 5) <= 5


@pytest.fixture
def redispatch_at_production_pace(stack):
    """The fulfilment worker with production's PROVIDER_REDISPATCH_AFTER (15 s) rather than the test
    settings' 2 s, so that a reserved charge sent again within seconds was sent by the recovery and
    not by the reconciler. Put back afterwards: the other fault tests run with the test settings."""
    fulfil, test_env = stack.fulfil, stack.fulfil.env
    fulfil.stop()
    fulfil.env = {name: value for name, value in test_env.items() if name != "PROVIDER_REDISPATCH_AFTER"}
    fulfil.start(ready_marker=WORKER_READY)
    yield
    fulfil.stop()
    fulfil.env = test_env
    fulfil.start(ready_marker=WORKER_READY)


def _final_within(charge_ids: list[int], seconds: float) -> float:
    started = time.monotonic()
    while Charge.objects.filter(pk__in=charge_ids).exclude(stage=Charge.Stage.DONE).exists():
        elapsed = time.monotonic() - started
        if elapsed > seconds:
            stages = sorted(Charge.objects.filter(pk__in=charge_ids).values_list("stage", "outcome"))
            raise AssertionError(f"not final {elapsed:.1f} s after the worker was ready: {stages}")
        time.sleep(0.05)
        close_old_connections()
    return time.monotonic() - started


@pytest.fixture
def stack_provider(stack, settings):
    """This process's provider is the stack's sandbox, as its workers' is."""
    settings.PROVIDER_URL = stack.sandbox.url
    get_provider.cache_clear()
    yield stack.sandbox
    get_provider.cache_clear()


def test_charges_a_killed_worker_reserved_or_whose_answers_it_missed_are_final_within_seconds_of_its_restart(
    stack, admin_headers, stack_provider, redispatch_at_production_pace, monkeypatch
):
    seller = _funded(stack, admin_headers)
    worker = stack.worker_for_shard(seller.shard)
    worker.kill()
    with monkeypatch.context() as lost:
        # What the worker's last settle left when the SIGKILL came after its commit and before its
        # publishes: reserved charges whose `ledger.fulfil` never left (the settle runs here, its
        # publish dropped)...
        lost.setattr(events, "intents_recorded", lambda **_: None)
        lost.setattr(events, "charges_reserved", lambda **_: None)
        ids = [
            charge_submit(seller_id=seller.seller.pk, phone_number="+989121234567", amount=100)[0].pk for _ in range(6)
        ]
        settle_seller(seller_id=seller.seller.pk)
        # ...and charges the provider answered while the worker was down, whose wake-up of the
        # second settle (posting the hold) was lost too.
        assert fulfil_charges(ids[:3]).answered == 3
    stages = sorted(Charge.objects.filter(pk__in=ids).values_list("stage", "outcome"))
    assert stages == [("reserved", None)] * 3 + [("submitted", "succeeded")] * 3

    worker.start(ready_marker=WORKER_READY)
    # Without the recovery's own send, the reserved ones waited for the reconciler (15 s).
    assert _final_within(ids, 5) <= 5

    assert Charge.objects.filter(pk__in=ids, status=Charge.Status.SUCCEEDED).count() == 6
    sent_as = dict(Charge.objects.filter(pk__in=ids).values_list("external_id", "id"))
    record = [t for t in stack_provider.transactions() if t["external_id"] in sent_as]
    assert sorted(sent_as[t["external_id"]] for t in record if t["status"] == "COMPLETED") == sorted(ids)
    assert len(record) == len(ids)  # each topped up exactly once
    assert_ledger_audit(seller.seller.pk)


def test_charges_and_approvals_accepted_while_the_broker_is_down_settle_once_it_is_back(stack, admin_headers):
    seller = _funded(stack, admin_headers)
    deposit_id = seller.deposit(500)
    stack.redis.kill()
    try:
        answers = [seller.charge().status_code for _ in range(5)]
        approval = requests.post(
            f"{stack.url}/api/v1/deposits/{deposit_id}/approve/", headers=admin_headers, timeout=10
        )
    finally:
        stack.redis.start()  # empty: every wake-up published meanwhile is gone
    assert answers == [202] * 5
    assert approval.status_code == 202, approval.text
    assert Charge.objects.filter(seller=seller.seller, status="queued").count() == 5
    # The workers reconnect (kombu's back-off: 2 s, then 4 s more...) and recover their shards.
    assert _settled_within(seller, 10) <= 10
    assert Deposit.objects.get(pk=deposit_id).status == Deposit.Status.APPROVED


def test_a_charge_committed_by_a_web_process_killed_before_its_wake_up_is_settled_within_seconds(stack, admin_headers):
    seller = _funded(stack, admin_headers)
    # Committed and never announced to Redis: what a process SIGKILLed between its commit and its
    # claim leaves (the client's replay of the key answers the original and wakes nobody).
    Charge.objects.create(seller=seller.seller, phone_number="+989121234567", amount=100)
    # The shard worker's watch wakes a seller whose first waiting intent is old and not moving
    # (STUCK_AFTER 2 s, checked every second); the sweeper would take LEDGER_SWEEP_AFTER=15 s.
    assert _settled_within(seller, 6) <= 6


def test_every_shard_worker_process_consumes_the_sweepers_queue():
    """Sweeps went to ledger.default, consumed by process 0 alone: with it down nothing was swept."""
    from workers.assignment import shard_assignment
    from workers.commands import worker_argv
    from workers.routing import SWEEP_QUEUE, route_task

    assert route_task("ledger.sweep_stale_sellers", (), {}, {}) == {"queue": SWEEP_QUEUE}
    for index, shards in enumerate(shard_assignment(8, 3)):
        argv = worker_argv(shards, name=f"w{index}", with_default_queue=index == 0)
        queues = argv[argv.index("-Q") + 1].split(",")
        assert SWEEP_QUEUE in queues
