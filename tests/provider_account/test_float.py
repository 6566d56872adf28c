"""The float: our balance at the session's real sandbox provider, polled, kept, shown in
ops/queues and the metrics, with its low-float alert and the routing answer."""

import logging

import pytest

from ledger.provider_account.floats import poll_float, provider_float_ok, provider_float_refused
from ledger.provider_account.models import ProviderBalanceSnapshot, ProviderFloat
from providers import get_provider
from providers.dtone import DTOneProvider
from tests.factories import client_for, make_admin

pytestmark = pytest.mark.django_db

BALANCE = 10**11  # what the provider tests leave the sandbox account at


@pytest.fixture
def sandbox(session_sandbox):
    yield session_sandbox
    session_sandbox.set_balance(BALANCE)


def _low_events(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "ledger.provider_float_low"]


def test_the_float_is_polled_kept_and_shown_in_ops_queues_and_the_metrics(sandbox):
    sandbox.set_balance(123_456)
    provider = get_provider()

    poll_float(provider)

    row = ProviderFloat.objects.get(provider=provider.name)
    assert (row.available, row.currency, row.error, row.low) == (123_456, "USD", "", False)
    assert ProviderBalanceSnapshot.objects.filter(provider=provider.name, available=123_456).count() == 1
    admin = client_for(make_admin())
    shown = admin.get("/api/v1/ops/queues/").json()["provider_floats"]
    assert [(f["provider"], f["available"], f["currency"], f["low"], f["ok"]) for f in shown] == [
        (provider.name, 123_456, "USD", False, True)
    ]
    metrics = admin.get("/api/v1/ops/metrics/").content.decode()
    assert f'ledger_provider_float{{currency="USD",provider="{provider.name}"}} 123456.0' in metrics
    assert f'ledger_provider_float_low{{provider="{provider.name}"}} 0.0' in metrics


def test_a_low_float_warns_once_while_it_lasts_and_says_when_it_recovers(sandbox, settings, caplog):
    provider = get_provider()
    settings.PROVIDER_FLOAT_LOW = {provider.name: 50_000}
    sandbox.set_balance(49_999)
    caplog.set_level(logging.INFO, logger="ledger.provider_account.floats")

    poll_float(provider)
    poll_float(provider)

    assert len(_low_events(caplog)) == 1 and _low_events(caplog)[0].levelno == logging.WARNING
    admin = client_for(make_admin())
    (shown,) = admin.get("/api/v1/ops/queues/").json()["provider_floats"]
    assert (shown["low"], shown["low_threshold"], shown["ok"]) == (True, 50_000, True)  # an alert, not a stop
    assert (
        f'ledger_provider_float_low{{provider="{provider.name}"}} 1.0'
        in admin.get("/api/v1/ops/metrics/").content.decode()
    )

    sandbox.set_balance(50_000)
    poll_float(provider)
    recovered = [r for r in caplog.records if getattr(r, "event", None) == "ledger.provider_float_recovered"]
    assert len(recovered) == 1 and not ProviderFloat.objects.get(provider=provider.name).low
    sandbox.set_balance(10)
    poll_float(provider)
    assert len(_low_events(caplog)) == 2  # a new crossing warns again


def test_one_threshold_for_every_provider(sandbox, settings):
    settings.PROVIDER_FLOAT_LOW = 1_000
    sandbox.set_balance(999)
    assert poll_float(get_provider()).low


def test_routing_skips_a_provider_that_refused_for_balance_until_a_poll_finds_it_recovered(sandbox, settings):
    provider = get_provider()
    settings.PROVIDER_FLOAT_LOW = {provider.name: 1_000}
    assert provider_float_ok(provider.name)  # never polled: nothing says otherwise

    provider_float_refused(provider.name)
    assert not provider_float_ok(provider.name)
    sandbox.set_balance(500)  # still low: still skipped
    poll_float(provider)
    assert not provider_float_ok(provider.name)
    sandbox.set_balance(5_000)
    poll_float(provider)
    assert provider_float_ok(provider.name)

    sandbox.set_balance(0)
    poll_float(provider)
    assert not provider_float_ok(provider.name)  # nothing available


def test_a_provider_that_cannot_be_read_keeps_the_last_balance_and_shows_why(sandbox, caplog):
    sandbox.set_balance(77_000)
    provider = get_provider()
    poll_float(provider)
    unreachable = DTOneProvider(base_url="http://127.0.0.1:9", timeout=(0.5, 0.5), name=provider.name)
    caplog.set_level(logging.WARNING, logger="ledger.provider_account.floats")

    poll_float(unreachable)
    poll_float(unreachable)

    row = ProviderFloat.objects.get(provider=provider.name)
    assert row.available == 77_000 and row.error and row.error_at is not None
    assert len([r for r in caplog.records if getattr(r, "event", None) == "ledger.provider_float_unreadable"]) == 1
    poll_float(provider)
    assert ProviderFloat.objects.get(provider=provider.name).error == ""


def test_the_poll_is_a_beat_task_on_the_reconcilers_queue(settings):
    from workers.routing import RECONCILE_QUEUE, route_task

    entry = settings.CELERY_BEAT_SCHEDULE["ledger.poll_provider_float"]
    assert entry["schedule"] == settings.PROVIDER_FLOAT_INTERVAL
    assert route_task("ledger.poll_provider_float", (), {}, {}) == {"queue": RECONCILE_QUEUE}
