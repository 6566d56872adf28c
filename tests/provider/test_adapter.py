"""DTOneProvider against the real sandbox process: which answer becomes which Outcome."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.processes import free_port
from devstack.sandbox import SandboxProcess
from providers import get_provider
from providers.base import InvalidCallback, Outcome, ProviderError
from providers.dtone import DTOneProvider
from tests.provider.conftest import HANG_SECONDS, PENDING_SECONDS, msisdn, on_a_new_connection, sandbox_options


def _record_of(sandbox, external_id) -> list[dict]:
    answer = requests.get(f"{sandbox.url}/v1/transactions", params={"external_id": external_id}, timeout=5)
    return answer.json()["results"]


@pytest.mark.parametrize(
    ("suffix", "outcome", "failure_code"),
    [
        ("4567", Outcome.SUCCEEDED, None),
        ("9901", Outcome.FAILED, "invalid_number"),
        ("9902", Outcome.FAILED, "operator_declined"),
        ("9905", Outcome.PENDING, None),
    ],
)
def test_answered_statuses_map_to_outcomes(provider, external_id, suffix, outcome, failure_code):
    result = provider.submit(external_id=external_id, msisdn=msisdn(suffix), amount=300)
    assert (result.outcome, result.failure_code) == (outcome, failure_code)
    assert result.provider_reference is not None
    found = provider.lookup(external_id)
    assert (found.found, found.provider_reference, found.amount, found.msisdn) == (
        True,
        result.provider_reference,
        300,
        msisdn(suffix),
    )


def test_dropped_answer_is_unknown_and_lookup_finds_it_succeeded(provider, external_id):
    result = provider.submit(external_id=external_id, msisdn=msisdn("9903"), amount=5)
    assert result.outcome == Outcome.UNKNOWN
    found = provider.lookup(external_id)
    assert (found.found, found.outcome) == (True, Outcome.SUCCEEDED)


def test_read_timeout_is_unknown_and_lookup_finds_nothing(sandbox, external_id):
    impatient = DTOneProvider(base_url=sandbox.url, timeout=(1.0, HANG_SECONDS / 4))
    assert impatient.submit(external_id=external_id, msisdn=msisdn("9904"), amount=5).outcome == Outcome.UNKNOWN
    assert impatient.lookup(external_id).found is False


def test_throttled_first_is_retry_then_the_resubmit_succeeds(provider, external_id):
    first = provider.submit(external_id=external_id, msisdn=msisdn("9906"), amount=5)
    assert (first.outcome, first.retry_after) == (Outcome.RETRY, 1.0)
    assert provider.submit(external_id=external_id, msisdn=msisdn("9906"), amount=5).outcome == Outcome.SUCCEEDED


def test_resubmitting_a_completed_id_is_never_a_second_top_up(sandbox, provider, external_id):
    first = provider.submit(external_id=external_id, msisdn=msisdn(), amount=700)
    again = provider.submit(external_id=external_id, msisdn=msisdn(), amount=700)
    assert (again.outcome, again.provider_reference) == (Outcome.SUCCEEDED, first.provider_reference)
    assert len(_record_of(sandbox, external_id)) == 1


def test_reused_external_id_is_a_mismatch_never_a_failure(provider, external_id):
    provider.submit(external_id=external_id, msisdn=msisdn(), amount=700)
    result = provider.submit(external_id=external_id, msisdn=msisdn(), amount=701)
    assert (result.outcome, result.failure_code) == (Outcome.MISMATCH, None)
    assert external_id in result.detail


def test_an_answer_says_which_transaction_it_is_about(provider, external_id):
    number = msisdn()
    result = provider.submit(external_id=external_id, msisdn=number, amount=700)
    assert (result.external_id, result.msisdn, result.amount) == (external_id, number, 700)
    assert result.created_at is not None and result.created_at.tzinfo is not None
    assert provider.lookup(external_id).created_at == result.created_at


def test_invalid_request_is_failed_rejected(provider, external_id):
    result = provider.submit(external_id=external_id, msisdn="12345", amount=5)
    assert (result.outcome, result.failure_code) == (Outcome.FAILED, "provider_rejected")


def test_down_is_retry_and_lookup_raises(sandbox, provider, external_id):
    sandbox.configure(down=True)
    assert provider.submit(external_id=external_id, msisdn=msisdn(), amount=5).outcome == Outcome.RETRY
    with pytest.raises(ProviderError):
        provider.lookup(external_id)
    sandbox.configure(down=False)
    assert provider.lookup(external_id).found is False


def test_api_key_and_a_stopped_provider(tmp_path, external_id):
    sandbox = SandboxProcess(tmp_path, api_key="k3y", **sandbox_options()).start()
    try:
        keyed = DTOneProvider(base_url=sandbox.url, api_key="k3y")
        assert keyed.submit(external_id=external_id, msisdn=msisdn(), amount=5).outcome == Outcome.SUCCEEDED
        with pytest.raises(ProviderError):
            DTOneProvider(base_url=sandbox.url, api_key="wrong").submit(external_id="x", msisdn=msisdn(), amount=5)
        with pytest.raises(ProviderError):
            DTOneProvider(base_url=sandbox.url).lookup(external_id)
    finally:
        sandbox.stop()
    # On a connection opened for it, refused. (On the kept one, closed by the stop an instant ago,
    # the request would have gone out and been lost: sent again, refused, UNKNOWN.)
    result = on_a_new_connection(keyed, lambda: keyed.submit(external_id=f"{external_id}-2", msisdn=msisdn(), amount=5))
    assert result.outcome == Outcome.RETRY
    with pytest.raises(ProviderError):
        keyed.lookup(external_id)


def test_unresolvable_host_is_retry(external_id):
    provider = DTOneProvider(base_url="http://no-such-provider.invalid", timeout=(1.0, 1.0))
    assert provider.submit(external_id=external_id, msisdn=msisdn(), amount=5).outcome == Outcome.RETRY


def test_parse_callback_accepts_a_signed_one_and_rejects_a_tampered_one(provider, receiver, external_id):
    provider.submit(external_id=external_id, msisdn=msisdn("9902"), amount=5, callback_url=receiver.url)
    headers, body = receiver.for_external_id(external_id)
    result = provider.read_callback(provider.parse_callback(headers, body))
    assert (result.found, result.outcome, result.failure_code) == (True, Outcome.FAILED, "operator_declined")

    tampered = json.dumps(json.loads(body) | {"status": "COMPLETED", "failure_code": None}).encode()
    with pytest.raises(InvalidCallback):
        provider.parse_callback(headers, tampered)
    with pytest.raises(InvalidCallback):
        provider.parse_callback(headers | {"webhook-signature": "garbage"}, body)
    with pytest.raises(InvalidCallback):
        DTOneProvider(base_url=provider.base_url).parse_callback(headers, body)  # no secret: nothing verifies


def test_transactions_pages_through_more_than_a_thousand(provider):
    started = datetime.now(UTC) - timedelta(seconds=1)
    batch = f"page-{uuid.uuid4().hex[:8]}"
    ids = [f"{batch}-{n}" for n in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = set(pool.map(lambda i: provider.submit(external_id=i, msisdn=msisdn(), amount=1).outcome, ids))
    assert outcomes == {Outcome.SUCCEEDED}
    listed = list(provider.transactions(created_after=started, created_before=datetime.now(UTC) + timedelta(seconds=1)))
    mine = [t for t in listed if t.external_id.startswith(batch)]
    assert sorted(t.external_id for t in mine) == sorted(ids)
    references = [int(t.provider_reference) for t in listed]
    assert references == sorted(set(references))
    assert all(t.outcome == Outcome.SUCCEEDED and t.created_at.tzinfo for t in mine)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert list(provider.transactions(created_after=later, created_before=later + timedelta(hours=1))) == []


def test_get_provider_reads_the_settings(settings):
    settings.PROVIDER_URL, settings.PROVIDER_READ_TIMEOUT = "http://127.0.0.1:9", 2.5
    get_provider.cache_clear()
    try:
        provider = get_provider()
        assert (provider.base_url, provider.timeout, provider.name) == ("http://127.0.0.1:9", (1.0, 2.5), "sandbox")
        assert get_provider() is provider
    finally:
        get_provider.cache_clear()


def test_pending_becomes_final_by_lookup(provider, external_id):
    assert provider.submit(external_id=external_id, msisdn=msisdn("9905"), amount=9).outcome == Outcome.PENDING
    time.sleep(PENDING_SECONDS + 0.5)
    assert provider.lookup(external_id).outcome == Outcome.SUCCEEDED


def test_free_port_nothing_listens_is_retry(external_id):
    provider = DTOneProvider(base_url=f"http://127.0.0.1:{free_port()}")
    assert provider.submit(external_id=external_id, msisdn=msisdn(), amount=5).outcome == Outcome.RETRY


def test_a_reversal_and_a_late_success_in_the_sandboxs_own_dialect(sandbox, provider, external_id):
    assert provider.submit(external_id=external_id, msisdn=msisdn("9908"), amount=5).outcome == Outcome.SUCCEEDED
    late = f"{external_id}-late"
    impatient = DTOneProvider(base_url=sandbox.url, timeout=(1.0, HANG_SECONDS / 4))
    assert impatient.submit(external_id=late, msisdn=msisdn("9907"), amount=5).outcome == Outcome.UNKNOWN
    assert provider.lookup(late).found is False
    time.sleep(HANG_SECONDS + 0.5)  # longer than the reversal's delay too
    assert provider.lookup(external_id).outcome == Outcome.REVERSED
    assert provider.lookup(late).outcome == Outcome.SUCCEEDED
    assert provider.balance().currency == "USD"  # the account, in DT One's shape
