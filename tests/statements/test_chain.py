"""The per-seller hash chain: written by the settle, recomputable in Python and in SQL, checked by
both audits."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ledger.audit import audit_ledger, audit_ledger_incremental
from ledger.models import Account, Entry
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from ledger.statements.chain import CANONICAL_SQL, GENESIS, canonical_bytes, chain_hash
from tests.factories import make_admin, make_seller, request_and_approve
from tests.statements import tamper
from tests.support import assert_ledger_audit, settle_through_provider

PHONE = "+989121234567"

pytestmark = pytest.mark.django_db


def _busy_seller(charges=(3_000, 2_500, 9_000_000, 1_000)):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 10_000, admin)
    for amount in charges:
        charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=amount)
    settle_through_provider(seller.pk)  # deposit, holds, one unfunded, then posts or releases
    request_and_approve(seller, 700, admin)
    settle_seller(seller_id=seller.pk)
    return seller


def _entries(seller):
    return list(Entry.objects.filter(seller=seller).order_by("seq"))


def _canonical(entry: Entry) -> bytes:
    return canonical_bytes(
        seller_id=entry.seller_id,
        seq=entry.seq,
        kind=entry.kind,
        amount=entry.amount,
        balance_after=entry.balance_after,
        charge_id=entry.charge_id,
        deposit_id=entry.deposit_id,
        created_at=entry.created_at,
    )


def test_the_settle_chains_every_entry_from_the_previous_one():
    seller = _busy_seller()
    previous = GENESIS
    entries = _entries(seller)
    assert {e.kind for e in entries} >= {"deposit", "charge"}
    for entry in entries:
        previous = chain_hash(previous, _canonical(entry))
        assert bytes(entry.hash) == previous, f"seq {entry.seq}"
    assert bytes(Account.objects.get(seller=seller).last_hash) == previous
    assert_ledger_audit(seller.pk)


def test_postgresql_builds_the_same_canonical_bytes_as_python():
    seller = _busy_seller()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.seq, {CANONICAL_SQL.format(e='e')} FROM ledger_entry e WHERE e.seller_id = %s ORDER BY e.seq",
            [seller.pk],
        )
        in_sql = {seq: bytes(canonical) for seq, canonical in cursor.fetchall()}
    in_python = {entry.seq: _canonical(entry) for entry in _entries(seller)}
    assert in_sql == in_python
    assert any(b"|-" in value for value in in_python.values())  # a negative amount is in the sample


def test_a_seller_without_entries_has_the_genesis_hash():
    seller = make_seller()
    assert bytes(Account.objects.get(seller=seller).last_hash) == GENESIS
    assert_ledger_audit(seller.pk)


def test_batch_times_never_go_back_even_when_the_clock_does():
    admin, seller = make_admin(), make_seller()
    ahead = timezone.now() + timedelta(hours=1)  # a previous batch written by a host whose clock ran ahead
    Account.objects.filter(seller=seller).update(updated_at=ahead)
    request_and_approve(seller, 1_000, admin)
    settle_seller(seller_id=seller.pk)
    assert Entry.objects.get(seller=seller).created_at == ahead + timedelta(microseconds=1)
    assert_ledger_audit(seller.pk)


def test_the_full_audit_reports_an_amount_edited_in_place():
    seller = _busy_seller()
    tamper.edit_amount(seller.pk, 2, -1)
    breaches = [b for b in audit_ledger(seller_id=seller.pk) if b.invariant == 8]
    assert [b.entry_id for b in breaches] == [Entry.objects.get(seller=seller, seq=2).pk]
    assert "hash of seq 2" in breaches[0].message


def test_the_full_audit_reports_entries_swapped_and_the_account_head_moved():
    seller = _busy_seller()
    tamper.swap_entries(seller.pk, 2, 3)
    messages = [b.message for b in audit_ledger(seller_id=seller.pk) if b.invariant == 8]
    assert any("hash of seq 2" in m for m in messages) and any("hash of seq 3" in m for m in messages)
    Account.objects.filter(seller=seller).update(last_hash=GENESIS)
    assert any("last_hash" in b.message for b in audit_ledger(seller_id=seller.pk) if b.invariant == 3)


def test_the_periodic_audit_reports_a_new_entry_edited_in_place():
    seller = _busy_seller()
    first = audit_ledger_incremental(full_sellers=0)
    assert first.breaches == []
    admin = make_admin()
    request_and_approve(seller, 500, admin)
    request_and_approve(seller, 600, admin)
    settle_seller(seller_id=seller.pk)
    last = Account.objects.get(seller=seller).last_seq
    tamper.edit_amount(seller.pk, last - 1, 1)

    run = audit_ledger_incremental(full_sellers=0)

    chain = [b for b in run.breaches if b.invariant == 8]
    assert [b.entry_id for b in chain] == [Entry.objects.get(seller=seller, seq=last - 1).pk]


def test_the_sellers_verifier_builds_the_same_canonical_bytes():
    import ledger_verify
    from ledger.statements.documents import time_text

    seller = _busy_seller()
    for entry in _entries(seller):
        listed = ledger_verify.Entry(
            0,
            entry.seq,
            time_text(entry.created_at),
            entry.kind,
            entry.amount,
            entry.balance_before,
            entry.balance_after,
            bytes(entry.hash).hex(),
            entry.charge_id,
            entry.deposit_id,
        )
        assert ledger_verify.canonical_bytes(seller.pk, listed) == _canonical(entry)
