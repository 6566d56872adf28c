"""The posting module and its database guards, exercised in-process against PostgreSQL."""

import pytest
from django.core.management import CommandError
from django.db import IntegrityError, OperationalError, connection, transaction

from ledger.models import Account, Charge, Deposit, Entry
from ledger.posting import settle_batch, settle_sellers_batch
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller, settle_sellers
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, settle_through_provider

PHONE = "+989121234567"

pytestmark = pytest.mark.django_db


def _charge(seller, amount):
    return charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=amount)[0]


def test_settle_credits_deposits_then_debits_charges_in_order():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 10_000, admin)
    charges = [_charge(seller, amount) for amount in (4_000, 7_000, 6_000, 1_000)]

    outcome = settle_seller(seller_id=seller.pk)

    assert outcome.intents == 5
    statuses = [
        (c.status, c.stage, c.failure_code, c.balance_after)
        for c in Charge.objects.filter(pk__in=[c.pk for c in charges]).order_by("id")
    ]
    assert statuses == [
        ("queued", "reserved", None, 6_000),  # held, sent to the provider next
        ("failed", "done", "insufficient_funds", None),  # 7,000 > 6,000: skipped, the next one still tried
        ("queued", "reserved", None, 0),
        ("failed", "done", "insufficient_funds", None),
    ]
    entries = list(
        Entry.objects.filter(seller=seller)
        .order_by("seq")
        .values_list("seq", "kind", "amount", "balance_before", "balance_after")
    )
    assert entries == [
        (1, "deposit", 10_000, 0, 10_000),
        (2, "charge", -4_000, 10_000, 6_000),
        (3, "charge", -6_000, 6_000, 0),
    ]
    account = Account.objects.get(seller=seller)
    assert (account.balance, account.held, account.last_seq) == (0, 10_000, 3)
    assert Deposit.objects.get(seller=seller).status == "approved"
    assert_ledger_audit()

    settle_through_provider(seller.pk)  # the provider tops both up: the holds are posted
    assert [c.status for c in Charge.objects.filter(pk__in=[charges[0].pk, charges[2].pk])] == ["succeeded"] * 2
    account = Account.objects.get(seller=seller)
    assert (account.balance, account.held, account.last_seq) == (0, 0, 3)  # posting writes no entry
    assert_ledger_audit()


def test_settle_twice_applies_nothing_more():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    _charge(seller, 2_000)
    settle_seller(seller_id=seller.pk)

    again = settle_batch(seller_id=seller.pk, limit=100)

    assert again.intents == 0
    assert Entry.objects.filter(seller=seller).count() == 2
    assert_ledger_audit()


def test_settle_drains_in_batches_when_backlog_exceeds_the_limit():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 100_000, admin)
    for _ in range(25):
        _charge(seller, 1_000)

    outcome = settle_seller(seller_id=seller.pk, batch_size=10)

    assert outcome.batches == 3 and outcome.intents == 26
    assert Account.objects.get(seller=seller).balance == 75_000
    assert list(Entry.objects.filter(seller=seller).order_by("seq").values_list("seq", flat=True)) == list(range(1, 27))
    assert_ledger_audit()


def test_database_refuses_a_negative_balance():
    seller = make_seller()
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(seller=seller).update(balance=-1)


def test_database_refuses_an_entry_with_wrong_arithmetic():
    seller = make_seller()
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after, created_at,"
                " held_after, hash) VALUES (%s, 1, 'adjustment', 100, 0, 99, now(), 0, sha256(''))",
                [seller.pk],
            )


def test_database_refuses_a_second_entry_for_one_charge():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id,"
                " created_at, held_after, hash) VALUES (%s, 3, 'charge', -1000, 4000, 3000, %s, now(), 2000, sha256(''))",
                [seller.pk, charge.pk],
            )
    assert_ledger_audit()  # the refused write left the ledger whole


@pytest.mark.parametrize("statement", ["UPDATE ledger_entry SET amount = amount", "DELETE FROM ledger_entry"])
def test_entries_are_append_only(statement):
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    settle_seller(seller_id=seller.pk)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement)
    assert_ledger_audit()


def test_database_refuses_a_succeeded_charge_without_balance_after():
    seller = make_seller()
    charge = _charge(seller, 1_000)
    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.filter(pk=charge.pk).update(status="succeeded")


def test_audit_reports_a_balance_that_disagrees_with_the_ledger():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    settle_seller(seller_id=seller.pk)
    assert_ledger_audit(seller.pk)

    Account.objects.filter(seller=seller).update(balance=4_000)  # a write that bypassed posting

    with pytest.raises(CommandError, match="FAILED"):
        assert_ledger_audit(seller.pk)


def test_audit_reports_a_charge_marked_succeeded_without_an_entry():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    charge = _charge(seller, 1_000)
    settle_seller(seller_id=seller.pk)
    other = _charge(seller, 500)
    Charge.objects.filter(pk=other.pk).update(
        status="succeeded", stage="done", outcome="succeeded", balance_after=3_500, settled_at=charge.created_at
    )

    from ledger.audit import audit_ledger

    breaches = audit_ledger(seller_id=seller.pk)
    assert any(
        b.invariant == 5 and f"charge {other.pk} is succeeded/done without a hold" in b.message for b in breaches
    )
    assert any(b.invariant == 6 for b in breaches)


def test_a_drain_continues_after_its_last_charge_and_the_next_drain_starts_over():
    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 10_000, admin)
    first, second = _charge(seller, 1_000), _charge(seller, 2_000)

    # A drain that already passed `second` does not walk back to `first` (keyset continuation)...
    batch = settle_batch(seller_id=seller.pk, limit=100, after_charge_id=second.pk)
    assert (batch.deposits_applied, batch.charges_reserved, batch.last_charge_id) == (1, 0, second.pk)
    assert Charge.objects.get(pk=first.pk).status == "queued"

    # ...and the next drain, which starts from the beginning, settles both in id order.
    settle_seller(seller_id=seller.pk)
    assert list(Charge.objects.filter(seller=seller).order_by("id").values_list("stage", "balance_after")) == [
        ("reserved", 9_000),
        ("reserved", 7_000),
    ]
    assert_ledger_audit()


def test_a_session_that_lost_its_prepared_statements_fails_one_settle_and_the_retry_prepares_them():
    """A pooler's DISCARD ALL between transactions: the settle in flight fails before changing
    anything (its transaction is aborted), and the task's retry prepares the statements again."""
    seller = make_seller()
    request_and_approve(seller, 5_000, make_admin())
    settle_batch(seller_id=seller.pk, limit=100)
    charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=1_000)

    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(OperationalError):
        settle_batch(seller_id=seller.pk, limit=100)
    assert Account.objects.get(seller=seller).balance == 5_000
    outcome = settle_batch(seller_id=seller.pk, limit=100)
    assert outcome.charges_reserved == 1 and (outcome.balance, outcome.held) == (4_000, 1_000)
    assert_ledger_audit()


def test_several_sellers_settled_in_one_batch_each_as_alone():
    """settle_sellers_batch (a shard task's sellers): each seller's intents in its own order and
    sequence, deposits first, a charge the balance does not cover failed and the next tried."""
    admin = make_admin()
    rich, poor, idle = make_seller(), make_seller(), make_seller()
    request_and_approve(rich, 10_000, admin)
    request_and_approve(poor, 1_000, admin)
    rich_charges = [_charge(rich, amount) for amount in (3_000, 9_000, 2_000)]
    poor_charges = [_charge(poor, amount) for amount in (1_500, 1_000)]

    outcomes = settle_sellers_batch(seller_ids=[poor.pk, idle.pk, rich.pk, 10**9], limit=100)

    assert set(outcomes) == {rich.pk, poor.pk, idle.pk}  # no account, no outcome
    assert (outcomes[rich.pk].charges_reserved, outcomes[rich.pk].charges_failed) == (2, 1)
    assert (outcomes[poor.pk].deposits_applied, outcomes[poor.pk].charges_failed) == (1, 1)
    assert outcomes[idle.pk].intents == 0 and not outcomes[rich.pk].more_pending
    assert [Charge.objects.get(pk=c.pk).stage for c in rich_charges] == ["reserved", "done", "reserved"]
    assert [Charge.objects.get(pk=c.pk).balance_after for c in poor_charges] == [None, 0]
    assert list(Entry.objects.filter(seller=rich).order_by("seq").values_list("seq", "amount", "balance_after")) == [
        (1, 10_000, 10_000),
        (2, -3_000, 7_000),
        (3, -2_000, 5_000),
    ]
    assert (Account.objects.get(seller=poor).balance, Account.objects.get(seller=poor).last_seq) == (0, 2)
    assert_ledger_audit()


def test_a_full_multi_seller_batch_drains_the_rest_seller_by_seller():
    admin, sellers = make_admin(), [make_seller() for _ in range(3)]
    for seller in sellers:
        request_and_approve(seller, 100_000, admin)
        for _ in range(4):
            _charge(seller, 1_000)

    assert all(o.more_pending for o in settle_sellers_batch(seller_ids=[s.pk for s in sellers], limit=5).values())
    outcomes = settle_sellers(seller_ids=[s.pk for s in sellers], batch_size=5)

    assert not Charge.objects.filter(stage="queued").exists()
    assert sum(o.intents for o in outcomes.values()) == 15 - 5
    assert [Account.objects.get(seller=s).balance for s in sellers] == [96_000] * 3
    assert_ledger_audit()


@pytest.mark.django_db(transaction=True)
def test_overlapping_multi_seller_and_single_seller_batches_never_deadlock():
    """Accounts are locked in ascending seller id whatever order the caller gives: batches over
    overlapping sets of sellers, from several connections at once, all finish, exactly once."""
    import threading

    from django.db import connection as thread_connection

    admin, sellers = make_admin(), [make_seller() for _ in range(4)]
    for seller in sellers:
        request_and_approve(seller, 1_000_000, admin)
        for _ in range(30):
            _charge(seller, 1_000)
    ids = [s.pk for s in sellers]
    orders = [ids, ids[::-1], ids[1:], [ids[3], ids[0]], [ids[2]], ids[::2]]
    errors: list[BaseException] = []

    def run(order):
        try:
            for _ in range(5):
                settle_sellers_batch(seller_ids=order, limit=7)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    settle_sellers(seller_ids=ids)
    assert [Account.objects.get(seller=s).balance for s in sellers] == [970_000] * 4
    assert Entry.objects.filter(seller_id__in=ids, kind="charge").count() == 120
    assert_ledger_audit()
