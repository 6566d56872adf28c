"""The ledger core's acceptance tests: real PostgreSQL, real Redis and real `celery worker`
processes started with the production command. Every test ends with the ledger audit."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
from django.db import connections

from ledger.models import Account, Charge, Deposit, Entry
from ledger.services.deposits import deposit_request
from tests.core.clients import run_threads, submit_charges_in_child
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, subprocess_env, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _charge(client, amount, phone="09121234567"):
    return client.post("/api/v1/charges/", {"phone_number": phone, "amount": amount}, format="json")


def _fund(seller, admin, *amounts):
    for amount in amounts:
        request_and_approve(seller, amount, admin)


def _balance(seller) -> int:
    return Account.objects.get(seller=seller).balance


def test_baseline_two_sellers_exact_balances_and_one_entry_per_intent(workers):
    admin = make_admin()
    first, second = make_seller(), make_seller()
    _fund(first, admin, *[200_000] * 5)
    _fund(second, admin, *[300_000] * 5)
    first_client, second_client = client_for(first.user), client_for(second.user)

    codes = [_charge(first_client, 5_000).status_code for _ in range(60)]
    codes += [_charge(second_client, 1_500).status_code for _ in range(940)]
    assert set(codes) == {202}
    wait_settled(first.pk, second.pk)

    assert _balance(first) == 1_000_000 - 60 * 5_000 == 700_000
    assert _balance(second) == 1_500_000 - 940 * 1_500 == 90_000
    assert Charge.objects.filter(status="succeeded").count() == 1000
    assert Deposit.objects.filter(status="approved").count() == 10
    assert Entry.objects.filter(seller=first).count() == 65
    assert Entry.objects.filter(seller=second).count() == 945
    assert_ledger_audit()


def _interleaved_plan(client_index: int) -> list[tuple[int, int]]:
    """125 charges of 3,000 for the hot seller, with one of 1,000 for the other every 10th."""
    plan = []
    for n in range(125):
        plan.append((0, 3_000))
        if n % 10 == 0:
            plan.append((1, 1_000))
    return plan


def _assert_parallel_outcome(hot, other, codes):
    assert codes.count(202) == len(codes) == 16 * (125 + 13)
    wait_settled(hot.pk, other.pk)
    assert _balance(hot) == 10_000_000 - 2000 * 3_000 == 4_000_000
    assert Charge.objects.filter(seller=hot, status="succeeded").count() == 2000
    assert Entry.objects.filter(seller=hot, kind="charge").count() == 2000
    assert _balance(other) == 1_000_000 - 16 * 13 * 1_000
    assert_ledger_audit()


def test_parallel_charges_from_16_threads(workers):
    admin, hot, other = make_admin(), make_seller(), make_seller()
    _fund(hot, admin, 10_000_000)
    _fund(other, admin, 1_000_000)
    wait_settled(hot.pk, other.pk)
    users = [hot.user, other.user]

    def client_work(index):
        clients = [client_for(u) for u in users]
        return [_charge(clients[who], amount).status_code for who, amount in _interleaved_plan(index)]

    codes = run_threads(16, client_work)
    _assert_parallel_outcome(hot, other, codes)


def test_parallel_charges_from_16_processes(workers):
    admin, hot, other = make_admin(), make_seller(), make_seller()
    _fund(hot, admin, 10_000_000)
    _fund(other, admin, 1_000_000)
    wait_settled(hot.pk, other.pk)
    env = subprocess_env()
    # Forked from this process, with Django set up already: 16 separate processes (own database
    # and Redis connections, own GIL) without 16 interpreter start-ups on the suite's clock.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, ProcessPoolExecutor(16, mp_context=context) as pool:
        start = manager.Event()
        futures = [
            pool.submit(submit_charges_in_child, env, [hot.user_id, other.user_id], _interleaved_plan(i), start)
            for i in range(16)
        ]
        start.set()
        codes = [code for future in futures for code in future.result(timeout=300)]
    _assert_parallel_outcome(hot, other, codes)


def test_overdraft_race_exactly_five_of_twenty_succeed(workers):
    admin, seller = make_admin(), make_seller()
    _fund(seller, admin, 50_000)
    wait_settled(seller.pk)

    codes = run_threads(20, lambda i: [_charge(client_for(seller.user), 10_000).status_code])

    assert codes == [202] * 20
    wait_settled(seller.pk)
    charges = Charge.objects.filter(seller=seller)
    assert charges.filter(status="succeeded").count() == 5
    assert charges.filter(status="failed", failure_code="insufficient_funds").count() == 15
    assert _balance(seller) == 0
    assert_ledger_audit()


def test_double_approval_race_credits_once(workers):
    admin, seller = make_admin(), make_seller()
    deposit, _ = deposit_request(seller=seller, amount=75_000)

    codes = run_threads(10, lambda i: [client_for(admin).post(f"/api/v1/deposits/{deposit.pk}/approve/").status_code])

    assert sorted(codes) == [202] + [409] * 9
    wait_settled(seller.pk)
    assert _balance(seller) == 75_000
    assert Entry.objects.filter(deposit=deposit).count() == 1
    admin_client = client_for(admin)
    again = admin_client.post(f"/api/v1/deposits/{deposit.pk}/approve/")
    assert (again.status_code, again.json()["code"]) == (409, "invalid_state")
    reject = admin_client.post(f"/api/v1/deposits/{deposit.pk}/reject/", {"reason": "late"}, format="json")
    assert (reject.status_code, reject.json()["code"]) == (409, "invalid_state")
    rejected, _ = deposit_request(seller=seller, amount=10_000)
    assert admin_client.post(f"/api/v1/deposits/{rejected.pk}/reject/").status_code == 200
    assert admin_client.post(f"/api/v1/deposits/{rejected.pk}/approve/").status_code == 409
    wait_settled(seller.pk)
    assert _balance(seller) == 75_000
    assert Deposit.objects.get(pk=rejected.pk).status == "rejected"
    assert_ledger_audit()
