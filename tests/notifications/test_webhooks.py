"""Webhook delivery against a real receiver process that verifies every signature with the
`standardwebhooks` library, with the real shard and webhook workers and beat (tests/support.py
runs them on a short retry schedule)."""

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from django.db import close_old_connections

from ledger.models import Account
from notifications.models import Event, WebhookDelivery, WebhookEndpoint
from tests.api.live import free_port
from tests.factories import client_for, make_admin, make_seller, request_and_approve
from tests.support import WEBHOOK_TEST_SCHEDULE, Process, assert_ledger_audit, subprocess_env, wait_settled

pytestmark = pytest.mark.django_db(transaction=True)
RECEIVER = Path(__file__).with_name("receiver.py")


class Receiver:
    def __init__(self, tmp_path: Path, secrets: list[str], **env):
        self.port, self.log = free_port(), tmp_path / "received.jsonl"
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secrets, self.env, self.tmp_path = secrets, env, tmp_path
        self.process = None

    def start(self, secrets: list[str] | None = None, **env) -> "Receiver":
        self.secrets = secrets or self.secrets
        argv = [sys.executable, str(RECEIVER), str(self.port), str(self.log), *self.secrets]
        self.process = Process("receiver", argv, subprocess_env({**self.env, **env}), self.tmp_path)
        self.process.start(ready_marker="receiver ready", timeout=15)
        return self

    def stop(self) -> None:
        self.process.kill(signal.SIGKILL)

    def lines(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        """Wait for `count` distinct verified webhook ids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = {line["webhook_id"] for line in self.lines() if line["verified"]}
            if len(ids) >= count:
                return self.lines()
            time.sleep(0.1)
        raise TimeoutError(f"{len(ids)} of {count} webhooks received: {self.lines()[-5:]}")


def _endpoint(seller, url, **body):
    answer = client_for(seller.user).post("/api/v1/webhook-endpoints/", {"url": url, **body}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def _charges(seller, count, amount=1):
    client = client_for(seller.user)
    for _ in range(count):
        assert (
            client.post(
                "/api/v1/charges/", {"phone_number": "+989121234567", "amount": amount}, format="json"
            ).status_code
            == 202
        )


def _delivery_statuses(endpoint_id, expected: set[str], timeout: float = 15) -> set[str]:
    """The receiver logs a webhook before the worker has recorded its answer: poll the rows until
    they show `expected` (or the timeout), and return what they show."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        statuses = set(WebhookDelivery.objects.filter(endpoint_id=endpoint_id).values_list("status", flat=True))
        if statuses == expected or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)


def _refused_before_listening(endpoint_id, *, deliveries: int, timeout: float = 30) -> None:
    """Until each of the endpoint's deliveries has been attempted while nobody listens (connection
    refused), the first three times: an attempt counts once claimed, so the third may still be in
    flight when the receiver comes up, and the first is delivered on its third attempt at the
    earliest."""
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        attempts = list(
            WebhookDelivery.objects.filter(endpoint_id=endpoint_id).order_by("id").values_list("attempts", flat=True)
        )
        if len(attempts) == deliveries and attempts[0] >= 3 and min(attempts) >= 1:
            return
        assert time.monotonic() < deadline, f"attempts before the receiver listened: {attempts}"
        time.sleep(0.1)


def _event_ids(seller) -> set[str]:
    close_old_connections()
    return {f"evt_{pk}" for pk in Event.objects.filter(seller=seller).values_list("pk", flat=True)}


def test_every_event_arrives_signed_and_verifies_across_a_rotation(workers, tmp_path):
    admin, seller = make_admin(), make_seller()
    receiver = Receiver(tmp_path, [])
    endpoint = _endpoint(seller, receiver.url)
    receiver.start(secrets=[endpoint["secret"]])
    request_and_approve(seller, 100, admin)
    _charges(seller, 5)
    wait_settled(seller.pk, timeout=30)
    receiver.wait_for(6)
    rotated = client_for(seller.user).post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret/").json()
    assert rotated["secret"] != endpoint["secret"]
    # A receiver holding only the new secret and one holding only the old both verify the overlap.
    receiver.stop()
    receiver.start(secrets=[rotated["secret"], endpoint["secret"]])
    _charges(seller, 3)
    wait_settled(seller.pk, timeout=30)
    lines = receiver.wait_for(9)
    assert all(line["verified"] for line in lines)
    assert all(line["verified"] == [0, 1] for line in lines[-3:])
    assert {line["webhook_id"] for line in lines} == _event_ids(seller)
    assert {line["event"]["type"] for line in lines} == {"deposit.approved", "charge.succeeded"}
    assert all(line["event"]["seller"] == seller.pk for line in lines)
    receiver.stop()
    assert_ledger_audit(seller.pk)


def test_receiver_down_then_back_gets_every_event_on_schedule(workers, tmp_path):
    admin, seller = make_admin(), make_seller()
    receiver = Receiver(tmp_path, [])
    endpoint = _endpoint(seller, receiver.url, event_types=["charge.succeeded", "deposit.approved"])
    request_and_approve(seller, 1000, admin)
    _charges(seller, 20)
    wait_settled(seller.pk, timeout=30)
    _refused_before_listening(endpoint["id"], deliveries=21)
    receiver.start(secrets=[endpoint["secret"]])
    lines = receiver.wait_for(21, timeout=60)
    received = [line["webhook_id"] for line in lines if line["verified"]]
    assert set(received) == _event_ids(seller)  # every event, each at least once
    assert len(set(received)) == 21  # exactly once after dedupe on webhook-id
    # The schedule: attempt n+1 no sooner than schedule[n] (less 10 % jitter) after attempt n.
    schedule = [float(s) for s in WEBHOOK_TEST_SCHEDULE.split(",")]
    assert _delivery_statuses(endpoint["id"], {"succeeded"}) == {"succeeded"}
    delivery = WebhookDelivery.objects.filter(endpoint_id=endpoint["id"]).order_by("id").first()
    assert delivery.status == "succeeded" and delivery.attempts >= 3
    assert delivery.attempts <= 1 + len(schedule)
    lower = sum(schedule[1 : delivery.attempts]) * 0.9
    elapsed = delivery.delivered_at - delivery.created_at
    assert elapsed.total_seconds() >= lower
    receiver.stop()
    assert_ledger_audit(seller.pk)


def test_a_webhook_worker_killed_mid_delivery_loses_nothing(workers, tmp_path):
    admin, seller = make_admin(), make_seller()
    receiver = Receiver(tmp_path, [])
    endpoint = _endpoint(seller, receiver.url)
    receiver.start(secrets=[endpoint["secret"]], RECEIVER_DELAY="0.5")
    request_and_approve(seller, 1000, admin)
    _charges(seller, 10)
    wait_settled(seller.pk, timeout=30)
    receiver.wait_for(1, timeout=30)
    workers.webhooks.kill(signal.SIGKILL)  # mid-batch: the rest of its claim is in flight
    workers.ensure_running()
    receiver.stop()
    receiver.start(secrets=[endpoint["secret"]])
    lines = receiver.wait_for(11, timeout=60)
    assert {line["webhook_id"] for line in lines if line["verified"]} == _event_ids(seller)
    assert _delivery_statuses(endpoint["id"], {"succeeded"}) == {"succeeded"}
    receiver.stop()
    assert_ledger_audit(seller.pk)


def test_gone_disables_the_endpoint_and_tells_the_seller(workers, tmp_path):
    admin, seller = make_admin(), make_seller()
    receiver = Receiver(tmp_path, [])
    endpoint = _endpoint(seller, receiver.url)
    receiver.start(secrets=[endpoint["secret"]], RECEIVER_STATUS="410")
    request_and_approve(seller, 100, admin)
    wait_settled(seller.pk, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        close_old_connections()
        if not WebhookEndpoint.objects.get(pk=endpoint["id"]).enabled:
            break
        time.sleep(0.2)
    disabled = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert not disabled.enabled and "410" in disabled.disabled_reason
    assert Event.objects.filter(seller=seller, type="webhook_endpoint.disabled").count() == 1
    assert _delivery_statuses(endpoint["id"], {"failed"}) == {"failed"}
    receiver.stop()
    assert Account.objects.get(seller=seller).balance == 100
    assert_ledger_audit(seller.pk)


def test_test_event_and_redelivery_reach_the_receiver_with_the_same_id(workers, tmp_path):
    seller = make_seller()
    receiver = Receiver(tmp_path, [])
    endpoint = _endpoint(seller, receiver.url)
    receiver.start(secrets=[endpoint["secret"]])
    client = client_for(seller.user)
    sent = client.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/test/")
    assert sent.status_code == 202
    lines = receiver.wait_for(1, timeout=30)
    assert lines[0]["event"]["type"] == "webhook.test"
    deliveries = client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/").json()["results"]
    assert deliveries[0]["status"] == "succeeded" and deliveries[0]["last_status_code"] == 200
    assert deliveries[0]["attempts"] == 1 and deliveries[0]["last_duration_ms"] is not None
    again = client.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/{deliveries[0]['id']}/redeliver/")
    assert again.status_code == 202
    deadline = time.monotonic() + 30
    while len(receiver.lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [line["webhook_id"] for line in receiver.lines()] == [lines[0]["webhook_id"]] * 2
    receiver.stop()
