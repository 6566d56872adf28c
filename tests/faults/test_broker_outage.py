"""A broker outage after an intent is committed never turns the request into an error: the
wake-up is logged as lost, and recovery or the sweeper settles the intent later (proven over HTTP
in test_recovery.py and the fault suite)."""

import subprocess
import sys

import pytest
from django.db import transaction

from devstack.processes import ROOT
from tests.support import subprocess_env
from workers import dispatch

pytestmark = pytest.mark.django_db(transaction=True)

# The reproduction of the defect: with Redis unreachable, Django's robust on_commit handler
# raised AttributeError while logging the failure of a functools.partial (no __qualname__).
REPRODUCTION = """
import django
django.setup()
from django.db import transaction
from workers.dispatch import wake_seller_on_commit
wake_seller_on_commit(1)            # autocommit: Django runs the callback at once
with transaction.atomic():
    wake_seller_on_commit(2)        # after the commit
print("no error")
"""


def test_wake_ups_with_the_broker_unreachable_raise_nothing_inside_or_outside_a_transaction():
    env = subprocess_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    result = subprocess.run(
        [sys.executable, "-c", REPRODUCTION], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no error" in result.stdout
    assert result.stderr.count("not published (ConnectionError)") == 2, result.stderr[-3000:]


def test_any_other_failure_after_the_commit_is_logged_not_raised(monkeypatch, caplog):
    def broken(seller_id: int) -> None:
        raise RuntimeError("not a broker error")

    monkeypatch.setattr(dispatch, "wake_seller_coalesced", broken)
    dispatch.wake_seller_on_commit(1)
    with transaction.atomic():
        dispatch.wake_seller_on_commit(2)
    assert caplog.text.count("Error calling wake_seller_on_commit.<locals>.wake_seller_after_commit") == 2
