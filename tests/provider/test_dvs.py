"""DVSProvider against the real sandbox process's DT One dialect (/dvs/v1): every status class
mapped, a reused id answered by its transaction, refusals believed only without a record,
insufficient balance, reversal, a late success, and the money rule."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.processes import free_port
from providers.base import InvalidCallback, Outcome, ProviderError
from tests.provider.conftest import (
    BALANCE,
    HANG_SECONDS,
    KEY,
    PENDING_SECONDS,
    REVERSE_SECONDS,
    SECRET_KEY,
    dvs_for,
    msisdn,
    on_a_new_connection,
)

FIXED, FIXED_AMOUNT, FIXED_COST = "10101", 50_000_000, 81  # MCI 500,000 IRR for US$0.81
RANGED = "10107"  # MCI 200,000-20,000,000 IRR in steps of 10,000


def _send(dvs, external_id, suffix="4567", amount=FIXED_AMOUNT, product_id=FIXED, **more):
    return dvs.submit(external_id=external_id, msisdn=msisdn(suffix), amount=amount, product_id=product_id, **more)


def _raw(sandbox, external_id) -> list[dict]:
    answer = requests.get(
        f"{sandbox.url}/dvs/v1/transactions", params={"external_id": external_id}, auth=(KEY, SECRET_KEY), timeout=5
    )
    answer.raise_for_status()
    return answer.json()


def test_a_fixed_product_completes_with_dvs_status_ids_and_what_we_asked(dvs, sandbox, external_id):
    result = _send(dvs, external_id)
    assert (result.outcome, result.failure_code, result.provider_status) == (Outcome.SUCCEEDED, None, "COMPLETED")
    assert (result.external_id, result.msisdn, result.amount, result.currency, result.product_id) == (
        external_id,
        msisdn(),
        FIXED_AMOUNT,
        "IRR",
        FIXED,
    )
    assert result.created_at.tzinfo is not None
    [raw] = _raw(sandbox, external_id)
    assert raw["status"] == {"id": 70000, "message": "COMPLETED", "class": {"id": 7, "message": "COMPLETED"}}
    assert sandbox.balance()["available"] == BALANCE - FIXED_COST


def test_a_ranged_product_is_sent_as_a_destination_amount(dvs, sandbox, external_id):
    result = _send(dvs, external_id, amount=26_000_000, product_id=RANGED)
    assert (result.outcome, result.amount) == (Outcome.SUCCEEDED, 26_000_000)
    [raw] = _raw(sandbox, external_id)
    assert raw["requested_values"]["destination"] == {"unit_type": "CURRENCY", "unit": "IRR", "amount": 260000.0}


@pytest.mark.parametrize(
    ("amount", "product_id"), [(FIXED_AMOUNT + 100, FIXED), (25_005_000, RANGED), (10, RANGED), (FIXED_AMOUNT, "999")]
)
def test_a_product_that_cannot_deliver_the_amount_is_refused_without_sending(
    dvs, sandbox, external_id, amount, product_id
):
    result = _send(dvs, external_id, amount=amount, product_id=product_id)
    assert (result.outcome, result.failure_code, result.refusal) == (
        Outcome.FAILED,
        "provider_rejected",
        "product_unavailable",
    )
    assert _raw(sandbox, external_id) == []


def test_a_charge_without_a_product_cannot_be_sent_to_dvs(dvs, external_id):
    with pytest.raises(ProviderError):
        dvs.submit(external_id=external_id, msisdn=msisdn(), amount=FIXED_AMOUNT)


@pytest.mark.parametrize(
    ("status", "detail", "outcome", "failure_code", "refusal"),
    [
        ("CREATED", None, Outcome.PENDING, None, None),
        ("CONFIRMED", None, Outcome.PENDING, None, None),
        ("SUBMITTED", None, Outcome.PENDING, None, None),
        ("COMPLETED", None, Outcome.SUCCEEDED, None, None),
        ("REVERSED", None, Outcome.REVERSED, None, None),
        ("REJECTED", None, Outcome.FAILED, "provider_rejected", None),
        ("REJECTED", "REJECTED-INSUFFICIENT-BALANCE", Outcome.FAILED, "provider_rejected", "insufficient_balance"),
        ("REJECTED", "REJECTED-INVALID-CREDIT-PARTY", Outcome.FAILED, "invalid_number", None),
        ("REJECTED", "REJECTED-BARRED-CREDIT-PARTY", Outcome.FAILED, "operator_declined", None),
        ("CANCELLED", None, Outcome.FAILED, "provider_rejected", None),
        ("DECLINED", None, Outcome.FAILED, "operator_declined", None),
        ("DECLINED", "DECLINED-INVALID-CREDIT-PARTY", Outcome.FAILED, "invalid_number", None),
        ("DECLINED", "DECLINED-OPERATOR-CURRENTLY-UNAVAILABLE", Outcome.FAILED, "operator_declined", None),
    ],
)
def test_every_status_class_maps_to_an_outcome(
    dvs, sandbox, external_id, status, detail, outcome, failure_code, refusal
):
    _send(dvs, external_id)
    sandbox.force_status(external_id, status, status_detail=detail)
    found = dvs.lookup(external_id)
    assert (found.found, found.outcome, found.failure_code, found.refusal) == (True, outcome, failure_code, refusal)
    assert found.provider_status == (detail or status)
    [raw] = _raw(sandbox, external_id)
    assert raw["status"]["class"]["message"] == status


@pytest.mark.parametrize(("suffix", "code"), [("9901", "invalid_number"), ("9902", "operator_declined")])
def test_declines_are_final_failures(dvs, sandbox, external_id, suffix, code):
    result = _send(dvs, external_id, suffix)
    assert (result.outcome, result.failure_code, result.refusal) == (Outcome.FAILED, code, None)
    assert sandbox.balance()["available"] == BALANCE  # a decline costs nothing


def test_created_without_confirmation_is_pending_then_cancelled_is_failed(dvs, sandbox, external_id):
    held = sandbox.balance()["holding"]  # forced statuses of other tests may count as held
    body = {
        "external_id": external_id,
        "product_id": int(FIXED),
        "auto_confirm": False,
        "credit_party_identifier": {"mobile_number": msisdn()},
    }
    created = requests.post(f"{sandbox.url}/dvs/v1/async/transactions", json=body, auth=(KEY, SECRET_KEY), timeout=5)
    assert created.json()["status"]["class"] == {"id": 1, "message": "CREATED"}
    assert dvs.lookup(external_id).outcome == Outcome.PENDING
    assert sandbox.balance()["holding"] == held + FIXED_COST
    cancel = f"{sandbox.url}/dvs/v1/transactions/{created.json()['id']}/cancel"
    assert requests.post(cancel, auth=(KEY, SECRET_KEY), timeout=5).status_code == 200
    assert (dvs.lookup(external_id).outcome, dvs.lookup(external_id).failure_code) == (
        Outcome.FAILED,
        "provider_rejected",
    )
    assert (sandbox.balance()["available"], sandbox.balance()["holding"]) == (BALANCE, held)


def test_pending_becomes_final_by_lookup_and_by_a_verified_callback(dvs, sandbox, receiver, external_id):
    assert _send(dvs, external_id, "9905", callback_url=receiver.url).outcome == Outcome.PENDING
    time.sleep(PENDING_SECONDS + 0.5)
    assert dvs.lookup(external_id).outcome == Outcome.SUCCEEDED
    headers, body = receiver.for_external_id(external_id)
    told = _read(dvs, headers, body)
    assert (told.found, told.outcome, told.external_id, told.amount) == (
        True,
        Outcome.SUCCEEDED,
        external_id,
        FIXED_AMOUNT,
    )


def test_a_callback_is_checked_with_dvs_not_believed(dvs, sandbox, receiver, external_id):
    other = f"{external_id}-other"
    _send(dvs, external_id, callback_url=receiver.url)
    _send(dvs, other, "9902")
    headers, body = receiver.for_external_id(external_id)
    told = json.loads(body)
    with pytest.raises(InvalidCallback):  # tampered: the signature no longer verifies
        dvs.parse_callback(headers, json.dumps(told | {"external_id": other}).encode())
    unsigned = dvs_for(sandbox)  # as with DT One itself: no signature, the body is only a hint
    forged = json.dumps(told | {"status": {"class": {"id": 9, "message": "DECLINED"}}}).encode()
    assert _read(unsigned, {}, forged).outcome == Outcome.SUCCEEDED  # what DVS says, not the body
    with pytest.raises(InvalidCallback):  # names another transaction's id
        _read(unsigned, {}, json.dumps(told | {"external_id": other}).encode())
    with pytest.raises(InvalidCallback):
        unsigned.parse_callback({}, b"{nope")


def test_reading_a_callback_asks_dvs_and_checking_one_asks_nobody(sandbox, receiver, external_id):
    """The web checks a callback (parse_callback) and a worker reads it (read_callback): only the
    worker's half may wait on DVS."""
    _send(dvs_for(sandbox), external_id, callback_url=receiver.url)
    _, body = receiver.for_external_id(external_id)
    away = dvs_for(sandbox, base_url=f"http://127.0.0.1:{free_port()}/dvs/v1", timeout=(0.5, 0.5))
    notice = away.parse_callback({}, body)
    assert notice == {"id": json.loads(body)["id"], "external_id": external_id}
    with pytest.raises(ProviderError):
        away.read_callback(notice)
    assert dvs_for(sandbox).read_callback(notice).outcome == Outcome.SUCCEEDED


def test_a_reused_id_is_answered_by_its_transaction_never_a_second_top_up(dvs, sandbox, external_id):
    first = _send(dvs, external_id)
    again = _send(dvs, external_id)  # DVS refuses the id (1007001): the adapter reads what it holds
    assert (again.outcome, again.provider_reference) == (Outcome.SUCCEEDED, first.provider_reference)
    other = _send(dvs, external_id, "1111", amount=FIXED_AMOUNT)  # another number under the same id
    assert (other.outcome, other.msisdn) == (Outcome.SUCCEEDED, msisdn())  # what DVS holds: identity.py tells
    assert len(_raw(sandbox, external_id)) == 1
    assert sandbox.balance()["available"] == BALANCE - FIXED_COST


def test_insufficient_balance_is_a_refusal_and_nothing_is_recorded(dvs, sandbox, external_id):
    sandbox.set_balance(FIXED_COST - 1)
    result = _send(dvs, external_id)
    assert (result.outcome, result.failure_code, result.refusal, result.provider_status) == (
        Outcome.FAILED,
        "provider_rejected",
        "insufficient_balance",
        "1006001",
    )
    assert _raw(sandbox, external_id) == [] and dvs.balance().available == FIXED_COST - 1
    sandbox.set_balance(FIXED_COST)
    assert _send(dvs, external_id).outcome == Outcome.SUCCEEDED
    assert dvs.balance().available == 0


def test_a_completed_top_up_reversed_later_gives_the_cost_back(dvs, sandbox, receiver, external_id):
    assert _send(dvs, external_id, "9908", callback_url=receiver.url).outcome == Outcome.SUCCEEDED
    assert sandbox.balance()["available"] == BALANCE - FIXED_COST
    time.sleep(REVERSE_SECONDS + 0.5)
    found = dvs.lookup(external_id)
    assert (found.outcome, found.provider_status) == (Outcome.REVERSED, "REVERSED")
    assert sandbox.balance()["available"] == BALANCE
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the completion's callback, then the reversal's
        told = [json.loads(b) for _, b in receiver.received if json.loads(b)["external_id"] == external_id]
        if any(t["status"]["message"] == "REVERSED" for t in told):
            break
        time.sleep(0.05)
    headers, body = next((h, b) for h, b in receiver.received if json.loads(b)["status"]["message"] == "REVERSED")
    assert _read(dvs, headers, body).outcome == Outcome.REVERSED


def test_a_late_success_after_a_read_timeout(sandbox, external_id):
    impatient = dvs_for(sandbox, timeout=(1.0, HANG_SECONDS / 4))
    assert _send(impatient, external_id, "9907").outcome == Outcome.UNKNOWN
    assert impatient.lookup(external_id).found is False  # not yet
    time.sleep(HANG_SECONDS + 0.5)
    assert impatient.lookup(external_id).outcome == Outcome.SUCCEEDED  # the provider did it after all


def test_the_money_rule(sandbox, dvs, external_id):
    impatient = dvs_for(sandbox, timeout=(1.0, HANG_SECONDS / 4))
    assert _send(impatient, f"{external_id}-hang", "9904").outcome == Outcome.UNKNOWN  # read timeout
    assert _send(dvs, f"{external_id}-warm").outcome == Outcome.SUCCEEDED  # what it sells, read and kept
    dropped = on_a_new_connection(dvs, lambda: _send(dvs, f"{external_id}-drop", "9903"))  # on a new connection
    assert dropped.outcome == Outcome.UNKNOWN  # processed, answer lost
    assert dvs.lookup(f"{external_id}-drop").outcome == Outcome.SUCCEEDED
    # On a reused keep-alive connection the same loss is a stale connection's: sent again at once,
    # refused as used, and answered with the transaction the first request made.
    assert _send(dvs, f"{external_id}-drop2", "9903").outcome == Outcome.SUCCEEDED
    assert len(_raw(sandbox, f"{external_id}-drop2")) == 1
    throttled = _send(dvs, f"{external_id}-429", "9906")
    assert (throttled.outcome, throttled.retry_after) == (Outcome.RETRY, 1.0)
    sandbox.configure(down=True)
    assert _send(dvs, f"{external_id}-503").outcome == Outcome.RETRY
    with pytest.raises(ProviderError):
        dvs.lookup(external_id)
    sandbox.configure(down=False)
    refused = dvs_for(sandbox, base_url=f"http://127.0.0.1:{free_port()}/dvs/v1")
    assert _send(refused, f"{external_id}-refused").outcome == Outcome.RETRY  # connection refused
    assert dvs.lookup(f"{external_id}-refused").found is False


def test_wrong_credentials_are_a_misconfiguration(sandbox, external_id):
    wrong = dvs_for(sandbox, secret="nope")
    with pytest.raises(ProviderError):
        wrong.balance()
    assert _send(wrong, external_id).outcome == Outcome.RETRY  # the product could not even be read
    with pytest.raises(ProviderError):
        wrong.lookup(external_id)


def test_transactions_over_more_than_a_day_are_asked_a_day_at_a_time(dvs, external_id):
    started = datetime.now(UTC) - timedelta(seconds=1)
    ids = [f"{external_id}-{n}" for n in range(3)]
    for one in ids:
        _send(dvs, one)
    listed = list(dvs.transactions(created_after=started - timedelta(hours=30), created_before=datetime.now(UTC)))
    mine = {t.external_id: t for t in listed if t.external_id in ids}
    assert sorted(mine) == ids
    assert all(
        (t.outcome, t.amount, t.cost, t.cost_currency) == (Outcome.SUCCEEDED, FIXED_AMOUNT, FIXED_COST, "USD")
        for t in mine.values()
    )
    assert [t.provider_reference for t in listed] == sorted({t.provider_reference for t in listed}, key=int)


def test_balance_catalog_and_number_lookup(dvs, sandbox):
    balance = dvs.balance()
    assert (balance.available, balance.currency, balance.holding) == (BALANCE, "USD", sandbox.balance()["holding"])
    products = list(dvs.products())
    assert {p.provider_product_id for p in products} >= {FIXED, RANGED}
    [identified] = [o for o in dvs.lookup_number(msisdn()) if o.identified]
    assert identified.provider_operator_id == "101"


def test_a_reversed_rate_is_seeded(dvs, sandbox, external_id):
    sandbox.configure(reverse_rate=1)
    assert _send(dvs, external_id).outcome == Outcome.SUCCEEDED
    time.sleep(REVERSE_SECONDS + 0.5)
    assert dvs.lookup(external_id).outcome == Outcome.REVERSED


@pytest.fixture
def external_id():
    return f"d-{uuid.uuid4().hex[:30]}"  # DVS takes 40 characters at most


def _read(provider, headers, body: bytes):
    """A callback as the ledger takes it: checked by the web, read by a fulfilment worker."""
    return provider.read_callback(provider.parse_callback(headers, body))
