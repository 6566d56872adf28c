"""The contract proven from outside: real HTTP against gunicorn (4 processes) with the real shard
workers settling at the same time. Every test checks exact balances and ends with the audit."""

import pytest

from ledger.models import Account, Charge, Deposit, Entry
from tests.api.live import Api, concurrently
from tests.factories import PASSWORD, make_admin, make_seller, make_staff
from tests.support import assert_ledger_audit, wait_settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers, pytest.mark.slow]

PHONES = [f"0912{n:07d}" for n in range(1_000_000, 1_000_020)]  # 20 valid mobile numbers


def _login(url, user) -> Api:
    return Api.login(url, user.get_username(), PASSWORD)


def _fund(url, seller_api: Api, admin_api: Api, amounts: list[int]) -> None:
    for amount in amounts:
        deposit = seller_api.post("/api/v1/deposits/", {"amount": amount})
        assert deposit.status_code == 201, deposit.text
        approved = admin_api.post(f"/api/v1/deposits/{deposit.json()['id']}/approve/")
        assert approved.status_code == 202 and approved.json()["status"] == "approving", approved.text


def _charge_all(api: Api, plan: list[tuple[str, int]]) -> list[int]:
    codes = []
    for phone, amount in plan:
        response = api.post("/api/v1/charges/", {"phone_number": phone, "amount": amount})
        codes.append(response.status_code)
        assert (
            response.status_code != 202 or response.headers["Location"] == f"/api/v1/charges/{response.json()['id']}/"
        )
    return codes


def _balance(seller) -> int:
    return Account.objects.get(seller=seller).balance


def test_baseline_two_sellers_deposits_and_500_charges_each(live_server_url, workers):
    url, admin = live_server_url, _login(live_server_url, make_admin())
    sellers = [make_seller(), make_seller()]
    apis = [_login(url, seller.user) for seller in sellers]
    for api in apis:
        _fund(url, api, admin, [1_000_000] * 5)
    # 500 charges of 5,000 each, over 20 phone numbers (so every phone+amount pair repeats 25 times),
    # from 4 clients per seller.
    plan = [(PHONES[n % 20], 5_000) for n in range(500)]
    clients = [api.clone() for api in apis for _ in range(4)]
    codes = concurrently(clients, lambda i, c: _charge_all(c, plan[i % 4 :: 4]))
    assert codes.count(202) == 1000

    wait_settled(*(s.pk for s in sellers))
    for seller, api in zip(sellers, apis, strict=True):
        assert _balance(seller) == 5 * 1_000_000 - 500 * 5_000 == 2_500_000
        assert Entry.objects.filter(seller=seller).count() == 505
        assert Charge.objects.filter(seller=seller, status="succeeded").count() == 500
        assert api.get("/api/v1/me/").json()["seller"]["balance"] == 2_500_000
        assert api.get(f"/api/v1/sellers/{seller.pk}/reconcile/").status_code == 403
        assert admin.get(f"/api/v1/sellers/{seller.pk}/reconcile/").json()["ok"] is True
    assert Deposit.objects.filter(status="approved").count() == 10
    assert_ledger_audit()


def test_2000_charges_from_16_concurrent_clients(live_server_url, workers):
    url, admin = live_server_url, _login(live_server_url, make_admin())
    seller = make_seller()
    api = _login(url, seller.user)
    _fund(url, api, admin, [10_000_000])
    wait_settled(seller.pk)

    clients = [api.clone() for _ in range(16)]
    codes = concurrently(clients, lambda i, c: _charge_all(c, [(PHONES[i], 3_000)] * 125))
    assert codes == [202] * 2000

    wait_settled(seller.pk)
    assert _balance(seller) == 10_000_000 - 2000 * 3_000 == 4_000_000
    assert Entry.objects.filter(seller=seller, kind="charge").count() == 2000
    assert Charge.objects.filter(seller=seller, status="succeeded").count() == 2000
    assert_ledger_audit()


def test_overdraft_race_exactly_five_of_twenty_succeed(live_server_url, workers):
    url, admin = live_server_url, _login(live_server_url, make_admin())
    seller = make_seller()
    api = _login(url, seller.user)
    _fund(url, api, admin, [50_000])
    wait_settled(seller.pk)

    clients = [api.clone() for _ in range(20)]
    answers = concurrently(
        clients, lambda i, c: [c.post("/api/v1/charges/", {"phone_number": PHONES[i], "amount": 10_000})]
    )
    assert [a.status_code for a in answers] == [202] * 20
    wait_settled(seller.pk)

    outcomes = [api.get(f"/api/v1/charges/{a.json()['id']}/").json() for a in answers]
    succeeded = [o for o in outcomes if o["status"] == "succeeded"]
    failed = [o for o in outcomes if o["status"] == "failed"]
    assert len(succeeded) == 5 and len(failed) == 15
    assert {o["failure_code"] for o in failed} == {"insufficient_funds"}
    assert sorted(o["balance_after"] for o in succeeded) == [0, 10_000, 20_000, 30_000, 40_000]
    assert _balance(seller) == 0
    assert_ledger_audit()


def test_ten_concurrent_approvals_credit_once_and_later_decisions_are_409(live_server_url, workers):
    url = live_server_url
    seller = make_seller()
    api = _login(url, seller.user)
    deciders = [_login(url, make_admin()) for _ in range(5)] + [_login(url, make_staff("approver")) for _ in range(5)]
    deposit_id = api.post("/api/v1/deposits/", {"amount": 70_000}).json()["id"]

    answers = concurrently(deciders, lambda i, c: [c.post(f"/api/v1/deposits/{deposit_id}/approve/")])
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [409] * 9
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"invalid_state"}
    wait_settled(seller.pk)
    assert _balance(seller) == 70_000 and Entry.objects.filter(seller=seller).count() == 1
    assert api.get(f"/api/v1/deposits/{deposit_id}/").json()["status"] == "approved"

    admin = deciders[0]
    assert admin.post(f"/api/v1/deposits/{deposit_id}/approve/").status_code == 409
    assert admin.post(f"/api/v1/deposits/{deposit_id}/reject/", {"reason": "late"}).status_code == 409
    rejected_id = api.post("/api/v1/deposits/", {"amount": 1_000}).json()["id"]
    rejected = admin.post(f"/api/v1/deposits/{rejected_id}/reject/", {"reason": "no proof"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    late = admin.post(f"/api/v1/deposits/{rejected_id}/approve/")
    assert late.status_code == 409 and late.json()["code"] == "invalid_state"
    wait_settled(seller.pk)
    assert _balance(seller) == 70_000 and Entry.objects.filter(seller=seller).count() == 1
    assert_ledger_audit()


def test_one_idempotency_key_sent_ten_times_concurrently_makes_one_charge(live_server_url, workers):
    url, admin = live_server_url, _login(live_server_url, make_admin())
    seller = make_seller()
    api = _login(url, seller.user)
    _fund(url, api, admin, [100_000])
    wait_settled(seller.pk)

    body = {"phone_number": PHONES[0], "amount": 4_000, "reference": "order-77"}
    clients = [api.clone() for _ in range(10)]
    answers = concurrently(
        clients, lambda i, c: [c.post("/api/v1/charges/", body, headers={"Idempotency-Key": "k-77"})]
    )
    assert sorted(a.status_code for a in answers) == [200] * 9 + [202]
    assert len({a.json()["id"] for a in answers}) == 1

    wait_settled(seller.pk)
    retry = api.post("/api/v1/charges/", body, headers={"Idempotency-Key": "k-77"})
    assert (
        retry.status_code == 200 and retry.json()["status"] == "succeeded" and retry.json()["balance_after"] == 96_000
    )
    reused = api.post("/api/v1/charges/", {**body, "amount": 4_001}, headers={"Idempotency-Key": "k-77"})
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"

    # Deposits honour the key the same way.
    deposits = concurrently(
        clients, lambda i, c: [c.post("/api/v1/deposits/", {"amount": 777}, headers={"Idempotency-Key": "d-77"})]
    )
    assert sorted(a.status_code for a in deposits) == [200] * 9 + [201]
    assert len({a.json()["id"] for a in deposits}) == 1

    wait_settled(seller.pk)
    assert Charge.objects.filter(seller=seller).count() == 1
    assert Deposit.objects.filter(seller=seller, idempotency_key="d-77").count() == 1
    assert Entry.objects.filter(seller=seller, kind="charge").count() == 1
    assert _balance(seller) == 96_000
    assert_ledger_audit()


def test_api_key_and_error_shapes_over_http(live_server_url):
    url, admin = live_server_url, _login(live_server_url, make_admin())
    seller = make_seller()
    key = admin.post(f"/api/v1/sellers/{seller.pk}/api-keys/", {"name": "erp"}).json()["key"]
    integrator = Api(url)
    integrator.session.headers["Authorization"] = f"Api-Key {key}"
    assert integrator.get("/api/v1/me/").json()["role"] == "seller"
    anonymous = Api(url)
    for method, path, status, code in [
        ("GET", "/api/v1/charges/", 401, "not_authenticated"),
        ("GET", "/api/v1/no-such-thing/", 404, "not_found"),
        ("GET", "/api/v1/charges/1234567890123456789012/", 404, "not_found"),
    ]:
        response = anonymous.request(method, path)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert integrator.request("PUT", "/api/v1/charges/").json()["code"] == "method_not_allowed"
    too_big = integrator.post(
        "/api/v1/charges/", {"phone_number": PHONES[0], "amount": 1, "reference": "x" * 3_000_000}
    )
    assert (too_big.status_code, too_big.json()["code"]) == (413, "request_too_large")
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        assert anonymous.get(page).status_code == 200
    assert not Charge.objects.exists()
