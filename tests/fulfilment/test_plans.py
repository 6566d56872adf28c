"""The fulfilment's moves find their charges by primary key whatever the planner's statistics say.
Charges leave the open stages within seconds, so an ANALYZE nearly always finds charge_open_idx
empty; after an import reserves thousands at once, a statement that named an open stage as a
constant walked that whole partial index, the ids a mere filter, once per task (a million-row
import was delivered at 45 charges a second). Each statement is EXPLAINed here, as the worker
sends it, right after such an import."""

import json

import pytest
from django.db import connection

from ledger import charge_lifecycle as lifecycle
from ledger.charge_lifecycle import Answer
from ledger.fulfilment import reconcile, routing
from ledger.models import Charge
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db

CHARGES = 3_000


@pytest.fixture
def reserved_after_analyze():
    """CHARGES reserved charges of one seller, the table analyzed while none was open."""
    seller = make_seller()
    request_and_approve(seller, 10**9, make_admin())
    settle_seller(seller_id=seller.pk)
    for n in range(CHARGES):
        charge_submit(seller_id=seller.pk, phone_number=f"+98912{n:07d}", amount=100)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_charge")  # every charge queued: the open stages look empty
    settle_seller(seller_id=seller.pk, time_budget=60)
    ids = list(Charge.objects.filter(seller=seller, stage="reserved").order_by("id").values_list("id", flat=True))
    assert len(ids) == CHARGES
    return ids


def _index_scans(sql: str, params) -> dict[str, str | None]:
    """The indexes of ledger_charge the statement's plan reads, each with its index condition. A
    prepared statement's plan is read twice: as planned for these values, and as the generic plan
    PostgreSQL may keep for the session after five executions."""
    modes = ["auto", "force_generic_plan"] if sql.startswith("EXECUTE ") else ["auto"]
    found = {}
    for mode in modes:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('plan_cache_mode', %s, false)", [mode])
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            (plan,) = cursor.fetchone()
            cursor.execute("RESET plan_cache_mode")
        nodes = [(plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            if node.get("Relation Name") == "ledger_charge" and "Index Name" in node:
                found[node["Index Name"]] = node.get("Index Cond")
            nodes.extend(node.get("Plans", []))
    return found


def _indexes(sql: str, params) -> set[str]:
    return set(_index_scans(sql, params))


def _statements_of(action) -> list[tuple[str, list]]:
    statements = []

    def record(execute, sql, params, many, context):
        query = sql.lstrip().startswith(("SELECT", "UPDATE", "WITH")) and "ledger_charge" in sql
        if query or sql.startswith("EXECUTE "):  # a prepared statement (core/db/prepared.py)
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        action()
    return statements


def test_every_move_of_the_fulfilment_finds_its_charges_by_primary_key_with_stale_statistics(reserved_after_analyze):
    ids = reserved_after_analyze[:50]

    def moves():
        routing.plan(ids)
        lifecycle.claim_for_sending(ids, first_check_after=60, external_id_prefix="plan-", provider="sandbox")
        lifecycle.mark_pending([(ids[0], "ref")])
        lifecycle.mark_unknown(ids[1:3], check_after=60)
        lifecycle.resend(ids[1:3], lease=60)
        lifecycle.unclaim(ids[3:5])
        lifecycle.record_answers([Answer(ids[5], "succeeded", delivered_amount=100)])

    statements = _statements_of(moves)
    assert len(statements) >= 7
    for sql, params in statements:
        used = _indexes(sql, params)
        assert "charge_open_idx" not in used, (sql, used)
    assert_ledger_audit()


def test_the_reconcilers_due_reads_range_over_when_the_check_is_due(reserved_after_analyze):
    """After an import is delivered, every charge it sent has left the sent stages, but its entries
    stay in the open-charge indexes until a vacuum. The reconciler asks every two seconds whether
    any lookup is due: through charge_open_idx that walked all of them, as a bitmap scan that never
    marks one dead. Its reads must range over charge_check_due_idx, bounded by the due time."""
    ids = reserved_after_analyze
    lifecycle.claim_for_sending(ids, first_check_after=0, external_id_prefix="due-", provider="sandbox")
    answered = [Answer(charge, "succeeded", delivered_amount=100) for charge in ids[: CHARGES - 10]]
    lifecycle.record_answers(answered)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_charge")

    taken = []

    def ask_and_take():
        if reconcile._any_due(["sandbox"]):
            taken.extend(reconcile._take_due(500, ["sandbox"]))

    statements = _statements_of(ask_and_take)

    assert sorted(asked.charge_id for asked in taken) == ids[CHARGES - 10 :]
    assert len(statements) == 2  # the question, then the take
    for sql, params in statements:
        scans = _index_scans(sql, params)
        assert "charge_open_idx" not in scans, (sql, scans)
        assert "next_check_at" in (scans.get("charge_check_due_idx") or ""), (sql, scans)
    assert_ledger_audit()
