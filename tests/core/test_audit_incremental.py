"""The periodic audit (`ledger/audit/incremental.py`): checks what is new since each seller's
checkpoint, leaves older entries to its rolling full pass, never moves a checkpoint over a breach,
and reads one snapshot while sellers settle. Its own transactions, so `transaction=True`."""

import threading

import pytest
from django.core.management import CommandError
from django.db import connection, transaction

from ledger.audit import audit_ledger_incremental
from ledger.models import Account, AuditCheckpoint, Charge, Deposit, Entry
from ledger.services.charges import charge_submit
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_until_final

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+989121234567"


def _sell(seller, *amounts: int) -> None:
    for amount in amounts:
        charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=amount)
    settle_until_final(seller.pk)


def _funded_seller(admin, *amounts: int):
    seller = make_seller()
    request_and_approve(seller, 100_000, admin)
    _sell(seller, *amounts)
    return seller


def _tamper_entry(seller, seq: int, by: int) -> Entry:
    """Move an entry's amount and balance_after by `by`, keeping its own CHECK constraints: a write
    the append-only trigger refuses, so it goes around it the way only a superuser could."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE ledger_entry SET amount = amount + %s, balance_after = balance_after + %s"
            " WHERE seller_id = %s AND seq = %s",
            [by, by, seller.pk, seq],
        )
        assert cursor.rowcount == 1
    return Entry.objects.get(seller=seller, seq=seq)


def _checkpoint(seller) -> AuditCheckpoint:
    return AuditCheckpoint.objects.get(seller=seller)


def test_each_run_reads_only_the_entries_after_the_checkpoint():
    seller = _funded_seller(make_admin(), 1_000, 2_000, 3_000)  # a deposit and three holds

    first = audit_ledger_incremental(full_sellers=0)
    assert (first.breaches, first.entries, first.full_sellers) == ([], 4, [seller.pk])  # no checkpoint yet
    assert (_checkpoint(seller).seq, _checkpoint(seller).balance) == (4, 94_000)

    assert audit_ledger_incremental(full_sellers=0).entries == 0

    _sell(seller, 500, 700)
    third = audit_ledger_incremental(full_sellers=0)
    assert (third.breaches, third.entries, third.full_sellers) == ([], 2, [])
    checkpoint, account = _checkpoint(seller), Account.objects.get(seller=seller)
    assert (checkpoint.seq, checkpoint.balance, checkpoint.entry_sum) == (6, account.balance, account.balance)
    assert checkpoint.succeeded_below <= 1_000 + 2_000 + 3_000 + 500 + 700
    assert_ledger_audit()


def test_tampering_after_the_checkpoint_is_found_by_the_next_run_and_holds_the_checkpoint():
    seller = _funded_seller(make_admin(), 1_000)
    assert audit_ledger_incremental(full_sellers=0).breaches == []
    before = _checkpoint(seller)
    _sell(seller, 2_000, 3_000)  # entries 3 and 4
    tampered = _tamper_entry(seller, 3, by=100)

    for _ in range(2):  # reported again while it stands: the checkpoint did not move over it
        breaches = audit_ledger_incremental(full_sellers=0).breaches
        found = {(b.invariant, b.seller_id, b.entry_id) for b in breaches}
        assert (5, seller.pk, tampered.pk) in found  # the hold no longer matches its charge
        next_entry = Entry.objects.get(seller=seller, seq=4)
        assert (2, seller.pk, next_entry.pk) in found  # the chain breaks after it
        after = _checkpoint(seller)
        assert (after.seq, after.balance, after.verified_at) == (before.seq, before.balance, before.verified_at)
    with pytest.raises(CommandError, match="FAILED"):
        assert_ledger_audit()


def test_tampering_before_the_checkpoint_is_found_by_the_rolling_full_pass_within_its_bound():
    admin = make_admin()
    sellers = [_funded_seller(admin, 1_000, 2_000) for _ in range(3)]
    for _ in range(2):  # the first run starts every seller from nothing; the second moves the floors
        assert audit_ledger_incremental(full_sellers=0).breaches == []
    last = sellers[-1]  # the last in the rolling order (oldest full verification, then seller id)
    tampered = _tamper_entry(last, 2, by=100)

    assert audit_ledger_incremental(full_sellers=0).breaches == []  # behind every checkpoint
    with pytest.raises(CommandError, match="FAILED"):
        assert_ledger_audit()

    # One seller in full a run: each of the 3 sellers within ceil(3 / 1) = 3 runs.
    runs = [audit_ledger_incremental(full_sellers=1) for _ in range(3)]
    assert [run.full_sellers for run in runs] == [[s.pk] for s in sellers]
    assert runs[0].breaches == runs[1].breaches == []
    assert {(b.seller_id, b.entry_id) for b in runs[2].breaches} >= {(last.pk, tampered.pk)}
    # Not verified clean, so it stays first in line and is reported on every run.
    assert audit_ledger_incremental(full_sellers=1).full_sellers == [last.pk]
    assert audit_ledger_incremental(full_sellers=1).breaches != []


@pytest.mark.parametrize("tamper", ["balance", "succeeded_without_hold"])
def test_the_incremental_run_finds_what_the_full_audit_finds(tamper):
    seller = _funded_seller(make_admin(), 1_000)
    assert audit_ledger_incremental(full_sellers=0).breaches == []
    if tamper == "balance":  # a write that bypassed posting
        Account.objects.filter(seller=seller).update(balance=1)
        expected = {3, 6}
    else:  # a charge marked done by the provider's word, never held
        charge, _ = charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=500)
        Charge.objects.filter(pk=charge.pk).update(
            status="succeeded", stage="done", outcome="succeeded", balance_after=1, settled_at=charge.created_at
        )
        expected = {5, 6}

    breaches = audit_ledger_incremental(full_sellers=0).breaches
    assert {b.invariant for b in breaches} == expected
    assert {b.seller_id for b in breaches} == {seller.pk}
    with pytest.raises(CommandError, match="FAILED"):
        assert_ledger_audit(seller.pk)


def test_sellers_settling_while_the_audit_runs_give_no_false_breach():
    admin = make_admin()
    sellers = [_funded_seller(admin, 1_000) for _ in range(2)]
    errors: list[BaseException] = []
    done = threading.Event()

    def settle():
        try:
            for _ in range(15):
                for seller in sellers:
                    _sell(seller, *([100] * 20))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=settle)
    thread.start()
    runs = []
    while not done.is_set():
        runs.append(audit_ledger_incremental(full_sellers=1))
    thread.join(60)
    assert errors == []
    assert len(runs) > 1 and sum(run.entries for run in runs) > 0
    assert [b for run in runs for b in run.breaches] == []
    assert audit_ledger_incremental(full_sellers=0).breaches == []
    for seller in sellers:
        assert _checkpoint(seller).seq == Account.objects.get(seller=seller).last_seq == 2 + 15 * 20
    assert_ledger_audit()


def test_the_periodic_task_reports_what_it_covered():
    from workers.tasks import audit_task

    seller = _funded_seller(make_admin(), 1_000)
    summary = audit_task()
    assert summary["ok"] is True and summary["breaches"] == []
    assert summary["sellers"] == 1 and summary["full_sellers"] == 1 and summary["entries"] == 2
    assert summary["checkpoints_advanced"] == 1 and summary["seconds"] >= 0 and not summary["skipped"]
    assert _checkpoint(seller).seq == 2


def test_a_settle_committed_during_the_run_waits_for_the_next_run():
    """The run's checks and the checkpoint it writes read one snapshot: entries committed after the
    per-entry checks are neither checked nor passed over by this run's checkpoint."""
    seller = _funded_seller(make_admin(), 1_000)
    assert audit_ledger_incremental(full_sellers=0).breaches == []
    _sell(seller, 100)  # entry 3, new for the next run
    fired = []

    def settle_meanwhile(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not fired and "LATERAL (VALUES" in sql:  # right after the per-entry checks
            fired.append(True)
            thread = threading.Thread(target=lambda: (_sell(seller, 200, 300), connection.close()))
            thread.start()
            thread.join(30)
        return result

    with connection.execute_wrapper(settle_meanwhile):
        run = audit_ledger_incremental(full_sellers=0)
    assert fired and run.breaches == [] and run.entries == 1
    assert Account.objects.get(seller=seller).last_seq == 5
    assert _checkpoint(seller).seq == 3
    assert audit_ledger_incremental(full_sellers=0).entries == 2
    assert _checkpoint(seller).seq == 5


def test_a_first_run_finds_what_the_full_audit_finds_and_checkpoints_only_the_clean_sellers():
    """Sellers without a checkpoint go through the full audit's own checks, restricted to them; the
    checkpoints written from those checks carry the next runs, which read only what is new."""
    from ledger.audit import audit_ledger

    admin = make_admin()
    clean, tampered_seller = [_funded_seller(admin, 1_000, 2_000) for _ in range(2)]
    tampered = _tamper_entry(tampered_seller, 2, by=100)
    expected = {(b.invariant, b.seller_id, b.entry_id, b.message) for b in audit_ledger()}
    assert (5, tampered_seller.pk, tampered.pk) in {b[:3] for b in expected}

    first = audit_ledger_incremental(full_sellers=0)
    assert {(b.invariant, b.seller_id, b.entry_id, b.message) for b in first.breaches} == expected
    assert sorted(first.full_sellers) == sorted([clean.pk, tampered_seller.pk])
    assert not AuditCheckpoint.objects.filter(seller=tampered_seller).exists()
    checkpoint, account = _checkpoint(clean), Account.objects.get(seller=clean)
    assert (checkpoint.seq, checkpoint.balance, checkpoint.entry_sum) == (3, account.balance, account.balance)
    assert (checkpoint.other_sum, checkpoint.approved_below, checkpoint.succeeded_below) == (0, 100_000, 3_000)
    # Nothing was open and this run waited out the transactions begun before it: its floors pass
    # every intent, so the next run reads none of them again.
    assert checkpoint.charge_floor == Charge.objects.order_by("-id").first().pk + 1
    assert checkpoint.deposit_floor == Deposit.objects.order_by("-id").first().pk + 1

    assert audit_ledger_incremental(full_sellers=0).charges == 2  # the tampered seller's, from nothing
    _sell(clean, 500)
    second = audit_ledger_incremental(full_sellers=0)
    assert second.charges == 2 + 1
    assert {b.seller_id for b in second.breaches} == {tampered_seller.pk}  # again, from nothing
    assert second.full_sellers == [tampered_seller.pk]
    assert _checkpoint(clean).seq == 4 and _checkpoint(clean).succeeded_below == 3_500
    assert audit_ledger(seller_id=clean.pk) == []
