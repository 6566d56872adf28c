"""ReloadlyProvider against the real sandbox process's Reloadly dialect (/reloadly): tokens (renewed
before they expire, once more on a 401, one request for many threads), every status mapped, lookup
by custom identifier, refusals believed only without a record, insufficient balance, refunds, and
the money rule."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.processes import free_port
from providers.base import InvalidCallback, Outcome, ProviderError
from providers.reloadly_auth import MARGIN_SHARE
from tests.provider.conftest import (
    BALANCE,
    HANG_SECONDS,
    PENDING_SECONDS,
    REVERSE_SECONDS,
    msisdn,
    on_a_new_connection,
    reloadly_for,
)

RANGE, FIXED = "202", "203"  # MCI, by Reloadly's operators the sandbox derives from its catalog
AMOUNT, COST = 26_000_000, 42  # 260,000 IRR at the ranged wholesale rate: US$0.42
FIXED_AMOUNT, FIXED_COST = 50_000_000, 81  # 500,000 IRR: the fixed product's wholesale US$0.81


def _send(reloadly, external_id, suffix="4567", amount=AMOUNT, product_id=RANGE):
    return reloadly.submit(external_id=external_id, msisdn=msisdn(suffix), amount=amount, product_id=product_id)


def _report(sandbox, reloadly, external_id) -> list[dict]:
    headers = {"Authorization": f"Bearer {reloadly.tokens.token()}"}
    answer = requests.get(
        f"{sandbox.url}/reloadly/topups/reports/transactions",
        params={"customIdentifier": external_id},
        headers=headers,
        timeout=5,
    )
    answer.raise_for_status()
    return answer.json()["content"]


def _responses(sandbox, status: int) -> int:
    return sandbox.stats()["responses"].get(str(status), 0)


def test_a_ranged_top_up_in_the_destination_currency(reloadly, sandbox, external_id):
    result = _send(reloadly, external_id)
    assert (result.outcome, result.provider_status, result.failure_code) == (Outcome.SUCCEEDED, "SUCCESSFUL", None)
    assert (result.external_id, result.msisdn, result.amount, result.currency, result.product_id) == (
        external_id,
        msisdn(),
        AMOUNT,
        "IRR",
        RANGE,
    )
    assert result.created_at.tzinfo is not None
    [raw] = _report(sandbox, reloadly, external_id)
    assert (raw["deliveredAmount"], raw["deliveredAmountCurrencyCode"], raw["recipientPhone"]) == (
        260000.0,
        "IRR",
        msisdn().lstrip("+"),
    )
    assert sandbox.balance()["available"] == BALANCE - COST


def test_a_fixed_amount_and_an_operator_detected_from_the_number(reloadly, sandbox, external_id):
    fixed = _send(reloadly, external_id, amount=FIXED_AMOUNT, product_id=f"{FIXED}:{FIXED_AMOUNT}")
    assert (fixed.outcome, fixed.product_id) == (Outcome.SUCCEEDED, FIXED)
    detected = reloadly.submit(external_id=f"{external_id}-auto", msisdn=msisdn(), amount=AMOUNT)
    assert (detected.outcome, detected.product_id) == (Outcome.SUCCEEDED, RANGE)
    assert sandbox.balance()["available"] == BALANCE - FIXED_COST - COST


@pytest.mark.parametrize(
    ("amount", "product_id"), [(FIXED_AMOUNT + 100, FIXED), (10, RANGE), (AMOUNT, "99999"), (AMOUNT, "x")]
)
def test_what_the_operator_does_not_sell_is_refused_without_sending(reloadly, sandbox, external_id, amount, product_id):
    result = _send(reloadly, external_id, amount=amount, product_id=product_id)
    assert (result.outcome, result.failure_code, result.refusal) == (
        Outcome.FAILED,
        "provider_rejected",
        "product_unavailable",
    )
    assert _report(sandbox, reloadly, external_id) == []


@pytest.mark.parametrize(
    ("status", "reloadly_status", "outcome", "failure_code"),
    [
        ("COMPLETED", "SUCCESSFUL", Outcome.SUCCEEDED, None),
        ("SUBMITTED", "PENDING", Outcome.PENDING, None),
        ("DECLINED", "FAILED", Outcome.FAILED, "operator_declined"),
        ("REVERSED", "REFUNDED", Outcome.REVERSED, None),
    ],
)
def test_every_status_maps_to_an_outcome(
    reloadly, sandbox, external_id, status, reloadly_status, outcome, failure_code
):
    _send(reloadly, external_id)
    sandbox.force_status(external_id, status)
    found = reloadly.lookup(external_id)
    assert (found.found, found.outcome, found.failure_code, found.provider_status) == (
        True,
        outcome,
        failure_code,
        reloadly_status,
    )


@pytest.mark.parametrize(("suffix", "code"), [("9901", "invalid_number"), ("9902", "operator_declined")])
def test_declines_are_final_failures_with_their_reason(reloadly, sandbox, external_id, suffix, code):
    result = _send(reloadly, external_id, suffix)  # refused (400) with a FAILED top-up on record
    assert (result.outcome, result.failure_code, result.refusal) == (Outcome.FAILED, code, None)
    assert result.provider_reference is not None
    assert sandbox.balance()["available"] == BALANCE


def test_pending_is_looked_up_by_its_transaction_id(reloadly, external_id):
    assert _send(reloadly, external_id, "9905").outcome == Outcome.PENDING
    assert reloadly.lookup(external_id).outcome == Outcome.PENDING
    time.sleep(PENDING_SECONDS + 0.5)
    assert reloadly.lookup(external_id).outcome == Outcome.SUCCEEDED


def test_lookup_by_custom_identifier(reloadly, external_id):
    assert reloadly.lookup(external_id).found is False
    sent = _send(reloadly, external_id)
    found = reloadly.lookup(external_id)
    assert (found.found, found.provider_reference, found.amount, found.msisdn, found.created_at) == (
        True,
        sent.provider_reference,
        AMOUNT,
        msisdn(),
        sent.created_at,
    )


def test_a_reused_identifier_is_answered_by_its_top_up_never_a_second_one(reloadly, sandbox, external_id):
    first = _send(reloadly, external_id)
    again = _send(reloadly, external_id)
    assert (again.outcome, again.provider_reference, again.provider_status) == (
        Outcome.SUCCEEDED,
        first.provider_reference,
        "SUCCESSFUL",
    )
    assert len(_report(sandbox, reloadly, external_id)) == 1
    assert sandbox.balance()["available"] == BALANCE - COST


def test_insufficient_balance_is_a_refusal_and_nothing_is_recorded(reloadly, sandbox, external_id):
    sandbox.set_balance(COST - 1)
    result = _send(reloadly, external_id)
    assert (result.outcome, result.failure_code, result.refusal, result.provider_status) == (
        Outcome.FAILED,
        "provider_rejected",
        "insufficient_balance",
        "INSUFFICIENT_BALANCE",
    )
    assert _report(sandbox, reloadly, external_id) == [] and reloadly.balance().available == COST - 1
    sandbox.set_balance(COST)
    assert _send(reloadly, external_id).outcome == Outcome.SUCCEEDED
    assert reloadly.balance().available == 0


def test_a_completed_top_up_refunded_later(reloadly, sandbox, external_id):
    assert _send(reloadly, external_id, "9908").outcome == Outcome.SUCCEEDED
    time.sleep(REVERSE_SECONDS + 0.5)
    found = reloadly.lookup(external_id)
    assert (found.outcome, found.provider_status) == (Outcome.REVERSED, "REFUNDED")
    assert sandbox.balance()["available"] == BALANCE


def test_a_late_success_after_a_read_timeout(sandbox, external_id):
    impatient = reloadly_for(sandbox, timeout=(1.0, HANG_SECONDS / 4))
    impatient.tokens.token()  # its token first: the auth server answers at once
    assert _send(impatient, external_id, "9907").outcome == Outcome.UNKNOWN
    assert impatient.lookup(external_id).found is False
    time.sleep(HANG_SECONDS + 0.5)
    assert impatient.lookup(external_id).outcome == Outcome.SUCCEEDED


def test_one_token_for_many_threads_until_shortly_before_it_expires(sandbox, external_id):
    sandbox.configure(token_seconds=2)
    reloadly = reloadly_for(sandbox)
    issued, refused = sandbox.stats()["tokens_issued"], _responses(sandbox, 401)
    barrier = threading.Barrier(12)

    def send(n):
        barrier.wait()  # all at once, none with a token yet
        return _send(reloadly, f"{external_id}-{n}").outcome

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(send, range(12))) == {Outcome.SUCCEEDED}
    assert sandbox.stats()["tokens_issued"] == issued + 1
    time.sleep(2 * (1 - MARGIN_SHARE) + 0.1)  # past the renewal point, before the token expires
    assert _send(reloadly, f"{external_id}-later").outcome == Outcome.SUCCEEDED
    assert sandbox.stats()["tokens_issued"] == issued + 2
    assert _responses(sandbox, 401) == refused  # renewed before it expired: never refused


def test_a_refused_token_is_replaced_once_and_the_top_up_sent_once(reloadly, sandbox, external_id):
    _send(reloadly, f"{external_id}-first")
    issued, refused = sandbox.stats()["tokens_issued"], _responses(sandbox, 401)
    sandbox.expire_tokens()
    assert _send(reloadly, external_id).outcome == Outcome.SUCCEEDED
    assert (sandbox.stats()["tokens_issued"], _responses(sandbox, 401)) == (issued + 1, refused + 1)
    assert len(_report(sandbox, reloadly, external_id)) == 1


def test_wrong_credentials_are_a_misconfiguration_and_nothing_is_sent(sandbox, external_id):
    wrong = reloadly_for(sandbox, client_secret="nope")
    with pytest.raises(ProviderError):
        wrong.balance()
    with pytest.raises(ProviderError):
        wrong.lookup(external_id)
    assert _send(wrong, external_id).outcome == Outcome.RETRY  # no token, no operator: nothing sent


def test_the_money_rule(reloadly, sandbox, external_id):
    impatient = reloadly_for(sandbox, timeout=(1.0, HANG_SECONDS / 4))
    impatient.tokens.token()
    assert _send(impatient, f"{external_id}-hang", "9904").outcome == Outcome.UNKNOWN  # read timeout
    assert _send(reloadly, f"{external_id}-warm").outcome == Outcome.SUCCEEDED  # what it sells, read and kept
    dropped = on_a_new_connection(
        reloadly, lambda: _send(reloadly, f"{external_id}-drop", "9903")
    )  # on a new connection
    assert dropped.outcome == Outcome.UNKNOWN  # processed, answer lost
    assert reloadly.lookup(f"{external_id}-drop").outcome == Outcome.SUCCEEDED
    # On a reused keep-alive connection the same loss is a stale connection's: sent again at once,
    # refused as used, and answered with the transaction the first request made.
    assert _send(reloadly, f"{external_id}-drop2", "9903").outcome == Outcome.SUCCEEDED
    assert len(_report(sandbox, reloadly, f"{external_id}-drop2")) == 1
    throttled = _send(reloadly, f"{external_id}-429", "9906")
    assert (throttled.outcome, throttled.retry_after) == (Outcome.RETRY, 1.0)
    sandbox.configure(down=True)
    assert _send(reloadly, f"{external_id}-503").outcome == Outcome.RETRY
    with pytest.raises(ProviderError):
        reloadly.lookup(external_id)
    sandbox.configure(down=False)
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = reloadly_for(sandbox, base_url=nowhere)
    assert _send(refused, f"{external_id}-refused").outcome == Outcome.RETRY  # connection refused
    no_auth = reloadly_for(sandbox, auth_url=f"{nowhere}/oauth/token")
    assert _send(no_auth, f"{external_id}-no-token", product_id=None).outcome == Outcome.RETRY
    assert reloadly.lookup(f"{external_id}-refused").found is False


def test_no_callbacks(reloadly):
    with pytest.raises(InvalidCallback):
        reloadly.parse_callback({}, b'{"transactionId": 1}')


def test_transactions_of_a_window(reloadly, external_id):
    started = datetime.now(UTC) - timedelta(seconds=1)
    ids = [f"{external_id}-{n}" for n in range(3)]
    for one in ids:
        _send(reloadly, one)
    listed = list(reloadly.transactions(created_after=started, created_before=datetime.now(UTC) + timedelta(seconds=1)))
    mine = {t.external_id: t for t in listed if t.external_id in ids}
    assert sorted(mine) == ids
    assert all(
        (t.outcome, t.amount, t.cost, t.cost_currency) == (Outcome.SUCCEEDED, AMOUNT, COST, "USD")
        for t in mine.values()
    )
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert list(reloadly.transactions(created_after=later, created_before=later + timedelta(hours=1))) == []


def test_balance_catalog_and_number_lookup(reloadly):
    assert (reloadly.balance().available, reloadly.balance().currency) == (BALANCE, "USD")
    products = {p.provider_product_id: p for p in reloadly.products()}
    ranged = products[RANGE]
    assert (ranged.kind, ranged.min_amount, ranged.max_amount, ranged.cost_currency) == (
        "ranged",
        20_000_000,
        2_000_000_000,
        "USD",
    )
    fixed = products[f"{FIXED}:{FIXED_AMOUNT}"]
    assert (fixed.kind, fixed.amount, fixed.cost) == ("fixed", FIXED_AMOUNT, FIXED_COST)
    assert {c.iso_code for c in reloadly.countries()} >= {"IRN", "NGA", "KEN"}
    [operator] = reloadly.lookup_number("+2348031234567")
    assert (operator.country_iso_code, operator.identified) == ("NGA", True)
    assert reloadly.lookup_number("+98999") == []


@pytest.fixture
def external_id():
    return f"r-{uuid.uuid4().hex}"
