"""The float's poll and the daily close as the real workers run them: the poll on the
reconciler's queue (the fulfilment worker), the close on the import worker's, both against the
session's sandbox provider."""

import time

import pytest
from django.utils import timezone

from ledger.provider_account.models import ProviderClose, ProviderFloat
from providers import get_provider
from tests.factories import client_for, make_admin
from workers.provider_account_tasks import poll_provider_float_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def _until(found, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.2)
    raise AssertionError("not done in time")


@pytest.fixture
def sandbox(session_sandbox):
    yield session_sandbox
    session_sandbox.set_balance(10**11)  # what the provider tests start from


def test_the_workers_poll_the_float_and_run_a_requested_close(workers, sandbox):
    sandbox.set_balance(31_337)
    poll_provider_float_task.delay()
    polled = _until(lambda: ProviderFloat.objects.filter(provider=get_provider().name, available=31_337).first())
    assert polled.currency == "USD" and polled.error == ""

    admin = client_for(make_admin())
    today = timezone.now().date().isoformat()
    assert admin.post("/api/v1/ops/provider-close/", {"date": today}, format="json").status_code == 202
    close = _until(lambda: ProviderClose.objects.filter(day=today, status__in=["done", "failed"]).first())
    assert close.status == "done", close.error
    listed = admin.get("/api/v1/ops/provider-closes/").json()["results"]
    assert [(c["day"], c["status"]) for c in listed] == [(today, "done")]
