"""The live stream under its real ASGI server (uvicorn, as `make up` runs it): a client that
disconnects and reconnects with Last-Event-ID sees every event once, in the seller's order."""

import json
import sys
import time

import pytest
import requests
from django.db import transaction
from django.test import Client

from core.services import api_key_issue
from devstack.stack import stream_argv
from ledger.models import Charge
from ledger.posting import settle_batch
from notifications.outbox import event_record
from tests.api.live import free_port
from tests.factories import make_admin, make_seller, request_and_approve
from tests.faults.stack import terminate_database_backends
from tests.support import Process, assert_ledger_audit, settle_through_provider, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stream_url(tmp_path):
    port = free_port()
    argv = stream_argv(host="127.0.0.1", port=port, python=sys.executable)
    process = Process("stream", argv, subprocess_env({"NOTIFICATIONS_STREAM_POLL": "0.1"}), tmp_path)
    process.start(ready_marker="Uvicorn running", timeout=30)
    yield f"http://127.0.0.1:{port}/api/v1/events/stream/"
    process.stop()


def _read(response, count: int) -> list[tuple[int, dict]]:
    """`count` messages: (id, data); comments and `retry:` lines are skipped."""
    messages, current = [], {}
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):  # each line as it comes
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "data" in current:
            messages.append((current["id"], current["data"]))
            current = {}
            if len(messages) == count:
                return messages
    raise AssertionError(f"stream ended after {messages}")


def _spend(seller, *amounts):
    for amount in amounts:
        Charge.objects.create(seller=seller, phone_number="+989121234567", amount=amount)
    settle_through_provider(seller.pk)  # an overdraft fails at once; the rest once topped up
    # The session's workers, if an earlier test started them, may have claimed a reserved charge
    # first: its answer is then posted by them. Either way the charges are final before the next
    # event is made, so the events' order is the test's.
    deadline = time.monotonic() + 15
    while Charge.objects.filter(seller=seller, status=Charge.Status.QUEUED).exists():
        assert time.monotonic() < deadline, "charges still open"
        time.sleep(0.05)


def test_stream_resumes_from_last_event_id_without_gaps_or_repeats(stream_url):
    admin, seller, other = make_admin(), make_seller(), make_seller()
    _, key = api_key_issue(seller=seller, name="stream")
    headers = {"Authorization": f"Api-Key {key}"}
    request_and_approve(seller, 1000, admin)
    settle_batch(seller_id=seller.pk, limit=100)  # seq 1, before the stream: resumed from 0 below
    with requests.get(stream_url, headers={**headers, "Last-Event-ID": "0"}, stream=True, timeout=10) as first:
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/event-stream")
        _spend(seller, 1, 2)
        _spend(other, 1)  # another seller's events never appear
        seen = _read(first, 3)
    # Disconnected; events keep coming.
    _spend(seller, 3, 4000)
    with transaction.atomic():
        event_record(seller_id=seller.pk, type="webhook.test", data={})
    with requests.get(
        stream_url, headers={**headers, "Last-Event-ID": str(seen[-1][0])}, stream=True, timeout=10
    ) as second:
        _spend(seller, 5)
        seen += _read(second, 4)
    assert [seq for seq, _ in seen] == [1, 2, 3, 4, 5, 6, 7]
    assert [data["type"] for _, data in seen] == [
        "deposit.approved",
        "charge.succeeded",
        "charge.succeeded",
        "charge.failed",
        "charge.succeeded",
        "webhook.test",
        "charge.succeeded",
    ]
    assert {data["seller"] for _, data in seen} == {seller.pk}
    assert_ledger_audit()


def test_stream_refuses_without_credentials_and_bad_resume_points(stream_url):
    seller = make_seller()
    _, key = api_key_issue(seller=seller, name="stream")
    anonymous = requests.get(stream_url, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    wrong = requests.get(stream_url, headers={"Authorization": "Api-Key nope.nope"}, timeout=10)
    assert wrong.status_code == 401
    bad = requests.get(stream_url, headers={"Authorization": f"Api-Key {key}", "Last-Event-ID": "x"}, timeout=10)
    assert bad.status_code == 400 and "detail" in bad.json()
    # gunicorn (WSGI) never holds a thread for a stream: it answers at once.
    assert Client().get("/api/v1/events/stream/", headers={"Authorization": f"Api-Key {key}"}).status_code == 404


def _open(url: str, headers: dict) -> tuple[int, str | None]:
    """Opens a stream and reads its first line: (status, Retry-After)."""
    with requests.get(url, headers=headers, stream=True, timeout=10) as response:
        if response.status_code == 200:
            assert next(response.iter_lines(decode_unicode=True)) == "retry: 2000"
        return response.status_code, response.headers.get("Retry-After")


def test_streams_opened_after_the_database_backends_were_terminated_are_served(stream_url):
    """The stream's reads run on the event loop's pool threads, which Django's request signals
    never reach: a connection broken by a terminated backend stayed broken, and every later
    stream served by its thread answered 500 ("connection already closed") until a restart."""
    seller = make_seller()
    _, key = api_key_issue(seller=seller, name="stream")
    headers = {"Authorization": f"Api-Key {key}", "Last-Event-ID": "0"}
    for _ in range(4):  # the pool's threads hold connections
        assert _open(stream_url, headers) == (200, None)
    assert terminate_database_backends() > 0
    answers = [_open(stream_url, headers) for _ in range(8)]
    assert all(answer in ((200, None), (503, "1")) for answer in answers), answers
    assert answers[-1] == (200, None)
