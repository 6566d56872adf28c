"""The sandbox provider's contract, against the real process (provider_sandbox/)."""

import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from devstack.sandbox import SandboxProcess
from tests.provider.conftest import HANG_SECONDS, PENDING_SECONDS, SECRET, msisdn, sandbox_options


def _post(sandbox, external_id, number=None, amount=100, timeout=5.0, **extra):
    body = {"external_id": external_id, "msisdn": number or msisdn(), "amount": amount, **extra}
    return requests.post(f"{sandbox.url}/v1/transactions", json=body, timeout=timeout)


def _lookup(sandbox, external_id) -> list[dict]:
    answer = requests.get(f"{sandbox.url}/v1/transactions", params={"external_id": external_id}, timeout=5)
    assert answer.status_code == 200
    return answer.json()["results"]


def _raw_post(sandbox, body: dict, timeout: float = 5.0):
    """The answer's status, or the exception: tells a closed connection from a 500."""
    connection = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=timeout)
    try:
        connection.request("POST", "/v1/transactions", json.dumps(body), {"content-type": "application/json"})
        return connection.getresponse().status
    except (http.client.RemoteDisconnected, ConnectionResetError, TimeoutError) as exc:
        return exc
    finally:
        connection.close()


def test_new_id_is_201_same_body_200_other_body_409_and_recorded_once(sandbox, external_id):
    first = _post(sandbox, external_id)
    assert first.status_code == 201
    transaction = first.json()
    assert transaction["status"] == "COMPLETED" and transaction["failure_code"] is None
    assert transaction["completed_at"] and transaction["created_at"]

    again = _post(sandbox, external_id)
    assert again.status_code == 200 and again.json() == transaction
    assert _post(sandbox, external_id, amount=101).status_code == 409
    assert _post(sandbox, external_id, number=msisdn("1111")).json() == {"error": "external_id_conflict"}
    assert _lookup(sandbox, external_id) == [transaction]
    assert requests.get(f"{sandbox.url}/v1/transactions/{transaction['id']}", timeout=5).json() == transaction


def test_concurrent_identical_requests_make_one_transaction(sandbox, external_id):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(sandbox, external_id), range(8)))
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert len(_lookup(sandbox, external_id)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"msisdn": "+989121234567", "amount": 1},
        {"external_id": "x" * 65, "msisdn": "+989121234567", "amount": 1},
        {"external_id": "ok", "msisdn": "09121234567", "amount": 1},
        {"external_id": "ok", "msisdn": "+989121234567", "amount": 0},
        {"external_id": "ok", "msisdn": "+989121234567", "amount": "5"},
        {"external_id": "ok", "msisdn": "+989121234567", "amount": 1.5},
        {"external_id": "ok", "msisdn": "+989121234567", "amount": True},
        {"external_id": "ok", "msisdn": "+989121234567", "amount": 1, "callback_url": "ftp://x"},
        [1, 2],
    ],
)
def test_invalid_request_is_400_json(sandbox, body):
    answer = requests.post(f"{sandbox.url}/v1/transactions", json=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request" and answer.json()["detail"]


def test_malformed_json_unknown_path_and_wrong_method_answer_json(sandbox):
    malformed = requests.post(f"{sandbox.url}/v1/transactions", data=b"{nope", timeout=5)
    assert (malformed.status_code, malformed.json()["error"]) == (400, "invalid_request")
    unknown = requests.get(f"{sandbox.url}/v2/else", timeout=5)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "not_found"})
    missing = requests.get(f"{sandbox.url}/v1/transactions/987654321", timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found"})
    wrong = requests.delete(f"{sandbox.url}/v1/transactions", timeout=5)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET, POST"
    bad_limit = requests.get(f"{sandbox.url}/v1/transactions", params={"limit": 1001}, timeout=5)
    assert bad_limit.status_code == 400


@pytest.mark.parametrize(("suffix", "code"), [("9901", "invalid_number"), ("9902", "operator_declined")])
def test_magic_declines(sandbox, external_id, suffix, code):
    answer = _post(sandbox, external_id, number=msisdn(suffix))
    assert answer.status_code == 201
    assert (answer.json()["status"], answer.json()["failure_code"]) == ("DECLINED", code)


def test_9903_is_recorded_completed_but_the_connection_closes_without_an_answer(sandbox, external_id):
    body = {"external_id": external_id, "msisdn": msisdn("9903"), "amount": 5}
    outcome = _raw_post(sandbox, body)
    assert isinstance(outcome, http.client.RemoteDisconnected | ConnectionResetError), outcome  # not a 500
    [transaction] = _lookup(sandbox, external_id)
    assert transaction["status"] == "COMPLETED"
    assert _post(sandbox, external_id, number=msisdn("9903"), amount=5).status_code == 200  # a replay answers


def test_9904_hangs_then_closes_without_recording(sandbox, external_id):
    body = {"external_id": external_id, "msisdn": msisdn("9904"), "amount": 5}
    assert isinstance(_raw_post(sandbox, body, timeout=0.5), TimeoutError)
    started = time.monotonic()
    outcome = _raw_post(sandbox, body, timeout=HANG_SECONDS + 5)
    assert isinstance(outcome, http.client.RemoteDisconnected | ConnectionResetError), outcome
    assert HANG_SECONDS - 0.5 < time.monotonic() - started < HANG_SECONDS + 3
    assert _lookup(sandbox, external_id) == []


def test_9905_is_submitted_then_completed(sandbox, external_id):
    answer = _post(sandbox, external_id, number=msisdn("9905"))
    assert (answer.status_code, answer.json()["status"], answer.json()["completed_at"]) == (201, "SUBMITTED", None)
    time.sleep(PENDING_SECONDS + 0.5)
    [transaction] = _lookup(sandbox, external_id)
    assert transaction["status"] == "COMPLETED" and transaction["completed_at"]


def test_9906_is_throttled_once_unrecorded_then_completes(sandbox, external_id):
    first = _post(sandbox, external_id, number=msisdn("9906"))
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert _lookup(sandbox, external_id) == []
    second = _post(sandbox, external_id, number=msisdn("9906"))
    assert (second.status_code, second.json()["status"]) == (201, "COMPLETED")


def test_down_mode_answers_503_without_processing(sandbox, external_id):
    assert sandbox.configure(down=True)["down"] is True
    assert _post(sandbox, external_id).status_code == 503
    assert requests.get(f"{sandbox.url}/v1/transactions", timeout=5).status_code == 503
    sandbox.configure(down=False)
    assert _lookup(sandbox, external_id) == []
    assert _post(sandbox, external_id).status_code == 201


def test_config_refuses_unknown_settings_and_bad_values(sandbox):
    for body in ({"nope": 1}, {"decline_rate": 2}, {"latency_ms": -1}, {"down": "yes"}, {"seed": 3}):
        assert requests.post(f"{sandbox.url}/_sandbox/config", json=body, timeout=5).status_code == 400
    assert sandbox.configure(latency_ms=2)["latency_ms"] == 2


def test_latency_is_concurrent_not_serial(sandbox):
    sandbox.configure(latency_ms=300)
    started = time.monotonic()
    with ThreadPoolExecutor(60) as pool:
        statuses = list(
            pool.map(
                lambda _: requests.get(f"{sandbox.url}/v1/transactions?limit=1", timeout=10).status_code, range(60)
            )
        )
    assert statuses == [200] * 60
    assert time.monotonic() - started < 4  # 60 × 0.3 s = 18 s if they queued


def test_final_transactions_send_signed_callbacks(sandbox, receiver):
    ids = {suffix: f"cb-{suffix}-{uuid.uuid4().hex[:12]}" for suffix in ("4567", "9901", "9905")}
    for suffix, external_id in ids.items():
        assert _post(sandbox, external_id, number=msisdn(suffix), callback_url=receiver.url).status_code == 201
    for suffix, external_id in ids.items():
        headers, body = receiver.for_external_id(external_id)
        transaction = Webhook(SECRET).verify(body, headers)
        assert transaction["status"] == ("DECLINED" if suffix == "9901" else "COMPLETED")
        assert headers["webhook-id"] == f"tx_{transaction['id']}_{transaction['status']}"
    assert sandbox.stats()["callbacks_delivered"] >= 3


def test_record_survives_a_kill_and_a_restart(tmp_path):
    db = tmp_path / "record.db"
    sandbox = SandboxProcess(tmp_path, db=db, **sandbox_options(pending_seconds=1)).start()
    try:
        made = [_post(sandbox, f"keep-{n}").json() for n in range(3)]
        pending = _post(sandbox, "keep-pending", number=msisdn("9905")).json()
        sandbox.kill()
        sandbox.start()
        record = sandbox.transactions()
        assert record[:3] == made and record[3]["external_id"] == "keep-pending"
        assert _post(sandbox, "keep-1").status_code == 200  # still never processed twice
        time.sleep(1.5)
        [completed] = _lookup(sandbox, "keep-pending")
        assert (completed["id"], completed["status"]) == (pending["id"], "COMPLETED")  # completed after the restart
    finally:
        sandbox.stop()


def _run(sandbox, ids) -> list:
    seen = []
    for external_id in ids:
        try:
            answer = _post(sandbox, external_id, timeout=2)
            seen.append((answer.status_code, answer.json().get("status")))
        except requests.ConnectionError:
            seen.append("dropped")
    return seen


def test_seeded_rates_are_reproducible(tmp_path):
    rates = {"decline_rate": 0.2, "throttle_rate": 0.2, "error_rate": 0.2, "drop_rate": 0.2, "pending_rate": 0.2}
    ids = [f"seeded-{n}" for n in range(60)]
    runs = []
    for seed in (7, 7, 8):
        sandbox = SandboxProcess(tmp_path, seed=seed, **sandbox_options(**rates)).start()
        try:
            runs.append(_run(sandbox, ids))
            runs.append(_run(sandbox, ids))  # the retries of the same ids
        finally:
            sandbox.kill()  # nothing of its record is read again: no graceful stop to wait for
    assert runs[0:2] == runs[2:4]
    assert runs[0:2] != runs[4:6]
    first = runs[0]
    for kind in [(429, None), (503, None), (201, "DECLINED"), (201, "SUBMITTED"), (201, "COMPLETED"), "dropped"]:
        assert kind in first, kind
    assert runs[1] != first  # a retry meets its own draws: a throttled id is not throttled forever


def test_a_forced_status_calls_back_only_when_asked(sandbox, receiver):
    """An operator's change of a declined top-up into a completion (a late success), with its
    callback on request: what the ledger's late-success tests and the fault suite drive."""
    external_id = f"late-{uuid.uuid4().hex[:12]}"
    assert _post(sandbox, external_id, number=msisdn("9902"), callback_url=receiver.url).status_code == 201
    receiver.for_external_id(external_id)  # the decline's callback
    sandbox.force_status(external_id, "SUBMITTED")
    sandbox.force_status(external_id, "COMPLETED", callback=True)

    deadline = time.monotonic() + 10
    statuses: list[str] = []
    while time.monotonic() < deadline and "COMPLETED" not in statuses:
        statuses = [
            Webhook(SECRET).verify(body, headers)["status"]
            for headers, body in list(receiver.received)
            if json.loads(body)["external_id"] == external_id
        ]
        time.sleep(0.05)
    assert statuses == ["DECLINED", "COMPLETED"]  # none for the forced SUBMITTED
