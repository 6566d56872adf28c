"""Balance at a past time: equal to a replay of the seller's rows up to then, for times on, just
before and just after every batch, between them, and before the first entry."""

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Min

from ledger.models import Account, Charge, Entry
from ledger.statements.balance_at import BALANCE_AT_SQL, balance_at
from tests.factories import client_for, make_seller, make_staff
from tests.statements.history import busy_history, replay
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db
US = timedelta(microseconds=1)


def _times(seller, rng):
    batches = set(Entry.objects.filter(seller=seller).values_list("created_at", flat=True))
    posts = set(Charge.objects.filter(seller=seller, status="succeeded").values_list("settled_at", flat=True))
    moments = sorted(batches | posts)
    assert len(posts - batches) > 0, "the history needs batches that only post holds"
    chosen = [t + d for t in moments for d in (-US, timedelta(0), US)]
    first, last = moments[0], moments[-1]
    chosen += [first + (last - first) * rng.random() for _ in range(40)]
    chosen += [first - timedelta(days=400), last + timedelta(days=1)]
    return chosen


def test_balance_at_any_time_equals_a_replay_of_the_entries_up_to_it():
    seller = busy_history()
    rng = random.Random(11)
    times = _times(seller, rng)
    assert any(replay(seller.pk, t)[2] > 0 for t in times)  # some moments hold credit
    for at in times:
        answer = balance_at(seller_id=seller.pk, at=at)
        assert (answer.seq, answer.balance, answer.held) == replay(seller.pk, at), at
    assert_ledger_audit(seller.pk)


def test_before_the_first_entry_everything_is_zero():
    seller = busy_history(rounds=2)
    first = Entry.objects.filter(seller=seller).aggregate(t=Min("created_at"))["t"]
    answer = balance_at(seller_id=seller.pk, at=first - US)
    assert (answer.seq, answer.balance, answer.held, answer.entry_created_at) == (0, 0, 0, None)


def test_the_endpoint_answers_the_seller_and_staff_and_no_one_else():
    seller = busy_history(rounds=3)
    at = Entry.objects.filter(seller=seller, seq=2).values_list("created_at", flat=True).get()
    expected = replay(seller.pk, at)

    own = client_for(seller.user).get("/api/v1/balance/", {"at": at.isoformat()})
    assert own.status_code == 200, own.content
    body = own.json()
    assert (body["seq"], body["balance"], body["held"]) == expected
    assert body["available"] == body["balance"]

    staff = client_for(make_staff("auditor"))
    assert staff.get("/api/v1/balance/", {"at": at.isoformat(), "seller": seller.pk}).json() == body
    assert staff.get("/api/v1/balance/", {"at": at.isoformat()}).status_code == 400
    other = client_for(make_seller().user)
    assert other.get("/api/v1/balance/", {"seller": seller.pk}).status_code == 404
    assert own.status_code == 200
    assert client_for(seller.user).get("/api/v1/balance/", {"at": "yesterday"}).status_code == 400
    now = client_for(seller.user).get("/api/v1/balance/").json()
    account = Account.objects.get(seller=seller)
    assert (now["balance"], now["held"]) == (account.balance, account.held)


def test_the_answer_reads_an_index_not_the_history():
    seller = busy_history(rounds=2)
    at = Entry.objects.filter(seller=seller).values_list("created_at", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask what the plan would be at scale
        cursor.execute("EXPLAIN " + BALANCE_AT_SQL, {"seller": seller.pk, "at": at})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "entry_seller_time_idx" in plan and "charge_posted_idx" in plan, plan
