"""Last month's statements: one per seller with entries in that month, made once however often the
beat asks, and queued statements whose build was lost are built by the same task."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from ledger.models import Entry, Statement
from ledger.statements.monthly import last_month, statements_monthly, statements_unbuilt
from tests.factories import make_seller
from tests.statements.history import busy_history
from workers.routing import IMPORTS_QUEUE, route_task

pytestmark = pytest.mark.django_db


def test_last_month_is_the_calendar_month_before_now():
    assert last_month(datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert last_month(datetime(2026, 1, 15, tzinfo=UTC)) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_every_seller_with_activity_last_month_gets_one_statement():
    busy, idle = busy_history(rounds=2), make_seller()
    first = Entry.objects.filter(seller=busy).order_by("seq").values_list("created_at", flat=True).first()
    next_month = (first.replace(day=1) + timedelta(days=32)).replace(day=2)

    assert statements_monthly(now=next_month) == 1
    assert statements_monthly(now=next_month) == 0
    statement = Statement.objects.get(seller=busy)
    assert (statement.period_start, statement.period_end) == last_month(next_month)
    assert not Statement.objects.filter(seller=idle).exists()
    assert statements_unbuilt() == []  # just made: its build was published
    Statement.objects.filter(pk=statement.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert statements_unbuilt() == [statement.pk]


def test_statement_tasks_run_on_the_import_workers_queue():
    for name in ("ledger.sign_checkpoints", "ledger.build_statement", "ledger.monthly_statements"):
        assert route_task(name, [], {}, {}) == {"queue": IMPORTS_QUEUE}
