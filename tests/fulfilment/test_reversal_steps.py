"""Reversals step by step in this process against the session's sandbox provider: a reversal of a
charge still held (found by the reconciler's lookup) releases it; one that arrives before the
success is posted is asked for again; a statement shows the refund as its own kind with its charge;
and the audit refuses a refund or an adjustment the lifecycle did not make. Every test ends with
the audit (or asserts what it reports)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ledger import charge_lifecycle as lifecycle
from ledger.audit.full import audit_ledger
from ledger.charge_lifecycle import Reversal
from ledger.conflicts import LateSuccess, conflict_debit_request, record_late_successes
from ledger.fulfilment.reconcile import look_up_open_charges
from ledger.fulfilment.service import fulfil_charges, record_reversals
from ledger.models import Account, Charge, Entry
from ledger.selectors import sellers_with_stale_intents
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from ledger.statements.chain import entry_hashes
from ledger.statements.documents import statement_entries, statement_open
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = pytest.mark.django_db


def _funded(amount: int):
    seller = make_seller()
    request_and_approve(seller, amount, make_admin())
    settle_seller(seller_id=seller.pk)
    return seller


def _charge(seller, ending: str, amount: int = 1_000) -> Charge:
    return charge_submit(seller_id=seller.pk, phone_number=f"+98912123{ending}", amount=amount)[0]


def _balance(seller) -> tuple[int, int]:
    account = Account.objects.get(seller=seller)
    return account.balance, account.held


def test_a_reversal_of_a_charge_still_held_found_by_lookup_releases_it(session_sandbox):
    seller = _funded(10_000)
    charge = _charge(seller, "9905")  # pending at the provider
    settle_seller(seller_id=seller.pk)
    fulfil_charges([charge.pk])
    charge.refresh_from_db()
    session_sandbox.force_status(charge.external_id, "REVERSED")  # completed and reversed meanwhile
    Charge.objects.filter(pk=charge.pk).update(next_check_at=charge.created_at)  # its lookup is due

    assert look_up_open_charges().answered == 1
    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert (charge.status, charge.failure_code, charge.reversal_reason) == ("failed", "provider_rejected", None)
    assert _balance(seller) == (10_000, 0)
    assert list(Entry.objects.filter(charge=charge).order_by("seq").values_list("kind", "amount")) == [
        ("charge", -1_000),
        ("release", 1_000),
    ]
    assert_ledger_audit(seller.pk)


def test_a_reversal_before_the_success_is_posted_is_asked_for_again():
    seller = _funded(10_000)
    charge = _charge(seller, "4567")
    settle_seller(seller_id=seller.pk)
    fulfil_charges([charge.pk])  # answered succeeded, not posted yet

    early = record_reversals([Reversal(charge.pk, "REVERSED")])
    assert (early.sellers, early.not_posted_yet) == ([], [charge.pk])
    settle_seller(seller_id=seller.pk)
    later = record_reversals([Reversal(charge.pk, "REVERSED")])
    assert (later.sellers, later.not_posted_yet) == ([seller.pk], [])
    assert record_reversals([Reversal(charge.pk, "REVERSED")]).sellers == []  # once
    settle_seller(seller_id=seller.pk)
    charge.refresh_from_db()
    assert charge.status == "reversed" and _balance(seller) == (10_000, 0)
    assert_ledger_audit(seller.pk)


def test_the_sweeper_wakes_a_seller_whose_refund_or_debit_waits():
    """A reversal or a debit whose wake-up was lost is found by the sweeper, as any waiting intent.
    (The test runs in one transaction, whose `now()` is its start: a negative age takes all.)"""
    reversed_seller, debited_seller = _funded(10_000), _funded(10_000)
    charge = _charge(reversed_seller, "4567")
    settle_through_provider(reversed_seller.pk)
    declined = _charge(debited_seller, "9902")
    settle_through_provider(debited_seller.pk)
    assert sellers_with_stale_intents(older_than_seconds=-3600) == []

    record_reversals([Reversal(charge.pk, "REVERSED")])
    record_late_successes([LateSuccess(declined.pk, "completed after all", {})])
    conflict_debit_request(charge_id=declined.pk, user_id=None)
    assert sorted(sellers_with_stale_intents(older_than_seconds=-3600)) == [reversed_seller.pk, debited_seller.pk]
    settle_seller(seller_id=reversed_seller.pk)
    settle_seller(seller_id=debited_seller.pk)
    assert sellers_with_stale_intents(older_than_seconds=-3600) == []
    assert _balance(reversed_seller) == (10_000, 0) and _balance(debited_seller) == (9_000, 0)
    assert_ledger_audit()


def test_a_statement_shows_the_refund_as_its_own_kind_with_the_charge():
    seller = _funded(10_000)
    start = timezone.now() - timedelta(seconds=1)
    charge = _charge(seller, "4567", 2_000)
    settle_through_provider(seller.pk)
    record_reversals([Reversal(charge.pk, "REVERSED")])
    settle_seller(seller_id=seller.pk)

    statement = statement_open(
        seller_id=seller.pk, period_start=start, period_end=timezone.now() + timedelta(seconds=1)
    )
    entries = list(statement_entries(statement))
    refund = entries[-1]
    assert (refund["kind"], refund["amount"], refund["balance_after"]) == ("refund", 2_000, 10_000)
    assert refund["charge"]["id"] == charge.pk and refund["charge"]["price"] == 2_000
    assert statement.totals["refund"] == {"count": 1, "amount": 2_000}
    assert statement.totals["charge"] == {"count": 1, "amount": -2_000}
    assert_ledger_audit(seller.pk)


def _append_entry(seller, kind: str, amount: int, charge: Charge) -> None:
    """An entry written around the settle (what the audit must catch): chained and balanced, so
    only invariant 5 has something to say."""
    account = Account.objects.get(seller=seller)
    now = timezone.now()
    row = (seller.pk, account.last_seq + 1, kind, amount, account.balance + amount, charge.pk, None)
    (digest,) = entry_hashes(bytes(account.last_hash), [row], now)
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id,
                   created_at, held_after, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [seller.pk, row[1], kind, amount, account.balance, row[4], charge.pk, now, account.held, digest],
        )
        cursor.execute(
            "UPDATE ledger_account SET balance = %s, last_seq = %s, last_hash = %s WHERE seller_id = %s",
            [row[4], row[1], digest, seller.pk],
        )


@pytest.mark.parametrize(
    ("kind", "amount", "reported"),
    [
        ("refund", 1_000, "and a refund of 1000"),  # a refund of a charge that is not reversed
        ("adjustment", -1_000, "and an adjustment of -1000"),  # a debit no admin asked for
    ],
)
def test_the_audit_refuses_a_refund_or_adjustment_the_lifecycle_did_not_make(kind, amount, reported):
    seller = _funded(10_000)
    charge = _charge(seller, "4567")
    settle_through_provider(seller.pk)
    assert_ledger_audit(seller.pk)

    _append_entry(seller, kind, amount, charge)
    breaches = [b for b in audit_ledger(seller_id=seller.pk) if b.invariant == 5]
    assert len(breaches) == 1 and reported in breaches[0].message, breaches


def test_a_refund_must_name_its_charge_and_give_credit_back():
    seller = _funded(10_000)
    charge = _charge(seller, "4567")
    settle_through_provider(seller.pk)
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT refund_shape")
        for charge_id, amount in ((None, 1_000), (charge.pk, -1_000)):
            with pytest.raises(Exception, match="entry_kind_matches_intent"):
                cursor.execute(
                    """INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after,
                           charge_id, created_at, held_after, hash)
                       VALUES (%s, 99, 'refund', %s, 9000, 9000 + %s, %s, now(), 0, decode(repeat('00', 32), 'hex'))""",
                    [seller.pk, amount, amount, charge_id],
                )
            cursor.execute("ROLLBACK TO SAVEPOINT refund_shape")
    assert lifecycle.REVERSED == "reversed"
    assert_ledger_audit(seller.pk)
