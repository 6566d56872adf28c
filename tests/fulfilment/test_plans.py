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
from ledger.fulfilment import routing
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


def _indexes(sql: str, params) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()
    found, nodes = set(), [(plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "ledger_charge" and "Index Name" in node:
            found.add(node["Index Name"])
        nodes.extend(node.get("Plans", []))
    return found


def test_every_move_of_the_fulfilment_finds_its_charges_by_primary_key_with_stale_statistics(reserved_after_analyze):
    ids = reserved_after_analyze[:50]
    statements = []

    def explain_instead(execute, sql, params, many, context):
        if "ledger_charge" in sql and sql.lstrip().startswith(("SELECT", "UPDATE", "WITH")):
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain_instead):
        routing.plan(ids)
        lifecycle.claim_for_sending(ids, first_check_after=60, external_id_prefix="plan-", provider="sandbox")
        lifecycle.mark_pending([(ids[0], "ref")])
        lifecycle.mark_unknown(ids[1:3], check_after=60)
        lifecycle.resend(ids[1:3], lease=60)
        lifecycle.unclaim(ids[3:5])
        lifecycle.record_answers([Answer(ids[5], "succeeded", delivered_amount=100)])

    assert len(statements) >= 7
    for sql, params in statements:
        used = _indexes(sql, params)
        assert "charge_open_idx" not in used, (sql, used)
    assert_ledger_audit()
