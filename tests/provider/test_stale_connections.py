"""A request sent on a keep-alive connection the provider closed as it arrived (the sandbox's
`stale_rate`: closed unread, unprocessed) is sent again at once under the same external id, by
every adapter (providers/http.py); nothing else is: not a read timeout, not a loss on a connection
opened for the request."""

import pytest
import requests
import urllib3

from providers.base import Outcome
from providers.dtone import DTOneProvider
from tests.provider.conftest import HANG_SECONDS, dvs_for, msisdn, on_a_new_connection, reloadly_for

DVS_FIXED, DVS_AMOUNT = "10101", 50_000_000  # tests/provider/test_dvs.py
RELOADLY_RANGE, RELOADLY_AMOUNT = "202", 26_000_000  # tests/provider/test_reloadly.py


def _adapter(kind: str, sandbox, **options):
    """(adapter, send(external_id, suffix)) for one dialect."""
    if kind == "sandbox":
        adapter = DTOneProvider(base_url=sandbox.url, **options)
        return adapter, lambda i, suffix="4567": adapter.submit(external_id=i, msisdn=msisdn(suffix), amount=300)
    if kind == "dvs":
        adapter = dvs_for(sandbox, **options)
        product, amount = DVS_FIXED, DVS_AMOUNT
    else:
        adapter = reloadly_for(sandbox, **options)
        product, amount = RELOADLY_RANGE, RELOADLY_AMOUNT
    return adapter, lambda i, suffix="4567": adapter.submit(
        external_id=i, msisdn=msisdn(suffix), amount=amount, product_id=product
    )


def _record(sandbox, external_id: str) -> list[dict]:
    """The sandbox's whole record of an id, whichever dialect made it."""
    answer = requests.get(f"{sandbox.url}/v1/transactions", params={"external_id": external_id}, timeout=5)
    answer.raise_for_status()
    return answer.json()["results"]


def _stale_closed(sandbox) -> int:
    return sandbox.stats()["stale_closed"]


def _requests(sandbox) -> int:
    """Requests the sandbox has seen before this one (`/_sandbox/stats` counts itself)."""
    return sandbox.stats()["requests"] - 1


@pytest.mark.parametrize("kind", ["sandbox", "dvs", "reloadly"])
def test_a_request_a_stale_keep_alive_connection_lost_is_sent_again_at_once_and_tops_up_once(
    sandbox, external_id, kind
):
    adapter, send = _adapter(kind, sandbox)
    assert send(f"{external_id}-first").outcome == Outcome.SUCCEEDED  # this thread's connection, open
    closed = _stale_closed(sandbox)
    sandbox.configure(stale_rate=1.0)  # every request on a reused connection: closed unread

    result = send(external_id)

    assert (result.outcome, result.external_id) == (Outcome.SUCCEEDED, external_id)
    assert _stale_closed(sandbox) > closed  # the first attempt met a closed connection
    assert [t["status"] for t in _record(sandbox, external_id)] == ["COMPLETED"]
    assert adapter.lookup(external_id).outcome == Outcome.SUCCEEDED  # a lookup is sent again too


def test_the_sandboxs_fault_is_a_reused_connection_closed_without_a_byte_of_an_answer(sandbox, external_id):
    """What a plain keep-alive client meets (and what the adapters classed as a lost answer,
    UNKNOWN, before): the request was never processed."""
    pool, url = urllib3.PoolManager(retries=False), f"{sandbox.url}/v1/transactions"
    body = {"external_id": external_id, "msisdn": msisdn(), "amount": 5}
    assert pool.request("POST", url, json=body | {"external_id": f"{external_id}-first"}).status == 201
    sandbox.configure(stale_rate=1.0)
    with pytest.raises(urllib3.exceptions.ProtocolError) as lost:
        pool.request("POST", url, json=body, timeout=5)
    assert isinstance(lost.value.args[1], ConnectionResetError)  # http.client's RemoteDisconnected is one
    assert _record(sandbox, external_id) == []


@pytest.mark.parametrize("kind", ["sandbox", "dvs", "reloadly"])
def test_a_read_timeout_on_a_reused_connection_stays_unknown_and_is_not_sent_again(sandbox, external_id, kind):
    _, send = _adapter(kind, sandbox, timeout=(1.0, HANG_SECONDS / 4))
    send(f"{external_id}-first")
    requests_before = _requests(sandbox)
    assert send(external_id, "9904").outcome == Outcome.UNKNOWN  # hangs past the read timeout
    assert _requests(sandbox) - requests_before == 2  # the top-up, and the stats read before it


def test_a_closed_connection_opened_for_the_request_is_not_stale_and_stays_unknown(sandbox, external_id):
    adapter, send = _adapter("sandbox", sandbox)
    requests_before = _requests(sandbox)
    assert (
        on_a_new_connection(adapter, lambda: send(external_id, "9903")).outcome == Outcome.UNKNOWN
    )  # processed, dropped
    assert _requests(sandbox) - requests_before == 2
    assert adapter.lookup(external_id).outcome == Outcome.SUCCEEDED


def test_a_resend_that_is_not_processed_either_leaves_the_first_attempt_unknown(sandbox, external_id):
    """The stale close and the provider going down at once: the first request may have been the
    one a provider processed before dropping the connection, so a 503 to the resend is no RETRY."""
    _, send = _adapter("sandbox", sandbox)
    send(f"{external_id}-first")
    sandbox.configure(stale_rate=1.0, error_rate=1.0)  # the resend, on a new connection: 503
    assert send(external_id).outcome == Outcome.UNKNOWN
    sandbox.configure(stale_rate=0.0)
    assert send(f"{external_id}-fresh").outcome == Outcome.RETRY  # a 503 alone is still a RETRY
