"""The Django admin: read-only everywhere money is concerned; deposit decisions go through the
same services as the API, and approving wakes the seller's worker after commit."""

import pytest
from django.contrib.auth.models import Permission

from ledger.models import Account, Charge, Deposit, Entry
from ledger.services.charges import charge_submit
from ledger.services.deposits import deposit_reject, deposit_request
from ledger.services.settlement import settle_seller
from notifications.models import WebhookEndpoint
from tests.factories import make_admin, make_seller, make_staff, request_and_approve
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db


def test_no_admin_screen_can_add_change_or_delete_money(client):
    admin, seller = make_admin(), make_seller()
    deposit_id = request_and_approve(seller, 1_000, admin)
    settle_seller(seller_id=seller.pk)
    charge, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=100)
    entry = Entry.objects.get(seller=seller)
    client.force_login(admin)

    for path, pk in [
        ("core/seller", seller.pk),
        ("ledger/entry", entry.pk),
        ("ledger/deposit", deposit_id),
        ("ledger/charge", charge.pk),
    ]:
        page = client.get(f"/admin/{path}/{pk}/change/")
        assert page.status_code == 200, path
        assert b'name="_save"' not in page.content, f"{path} has a save button"
        assert client.post(f"/admin/{path}/{pk}/change/", {"balance": 10**9, "amount": 1}).status_code == 403, path
        assert client.get(f"/admin/{path}/add/").status_code == 403, path
        assert client.post(f"/admin/{path}/{pk}/delete/", {"post": "yes"}).status_code == 403, path
    assert client.get("/admin/ledger/account/").status_code == 404  # balances are shown on sellers, read-only

    listing = client.get("/admin/core/seller/")
    assert listing.status_code == 200 and b"1000" in listing.content
    assert Account.objects.get(seller=seller).balance == 1_000
    assert Entry.objects.filter(seller=seller).count() == 1
    assert Charge.objects.get(pk=charge.pk).status == Charge.Status.QUEUED
    assert_ledger_audit()


def test_approve_action_goes_through_the_service_and_enqueues_after_commit(client, django_capture_on_commit_callbacks):
    admin, seller = make_admin(), make_seller()
    pending, _ = deposit_request(seller=seller, amount=500)
    already, _ = deposit_request(seller=seller, amount=700)
    deposit_reject(deposit_id=already.pk, rejected_by=admin)
    client.force_login(admin)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            "/admin/ledger/deposit/",
            {
                "action": "approve_deposits",
                "_selected_action": [pending.pk, already.pk],
                "index": 0,
            },
            follow=True,
        )
    assert response.status_code == 200
    text = response.content.decode()
    assert "1 deposit(s) approved" in text and f"#{already.pk}" in text and "Not changed" in text
    pending.refresh_from_db()
    assert pending.status == Deposit.Status.APPROVING and pending.decided_by == admin
    assert Deposit.objects.get(pk=already.pk).status == Deposit.Status.REJECTED
    assert [getattr(cb, "ledger_seller_id", None) for cb in callbacks] == [seller.pk]
    assert Account.objects.get(seller=seller).balance == 0  # the worker credits it, never the admin


def test_reject_action_moves_no_money(client, django_capture_on_commit_callbacks):
    admin, seller = make_admin(), make_seller()
    WebhookEndpoint.objects.create(seller=seller, url="https://hooks.example/x", secret="s")
    pending, _ = deposit_request(seller=seller, amount=500)
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(
            "/admin/ledger/deposit/", {"action": "reject_deposits", "_selected_action": [pending.pk], "index": 0}
        )
    assert Deposit.objects.get(pk=pending.pk).status == Deposit.Status.REJECTED
    # No wake-up: the one callback announces the deposit.rejected event to the webhook fan-out (the
    # seller has an endpoint; without one nothing is announced).
    assert [callback.__module__ for callback in callbacks] == ["notifications.outbox"]


def test_staff_without_the_deciding_role_sees_no_decision_actions(client):
    auditor = make_staff("auditor")
    auditor.is_staff = True
    auditor.save(update_fields=["is_staff"])
    auditor.user_permissions.add(*Permission.objects.filter(codename="view_deposit"))
    seller = make_seller()
    pending, _ = deposit_request(seller=seller, amount=500)
    client.force_login(auditor)
    page = client.get("/admin/ledger/deposit/")
    assert page.status_code == 200
    assert b"approve_deposits" not in page.content
    client.post("/admin/ledger/deposit/", {"action": "approve_deposits", "_selected_action": [pending.pk], "index": 0})
    assert Deposit.objects.get(pk=pending.pk).status == Deposit.Status.PENDING


def test_conflict_actions_settle_through_the_conflicts_functions_once(client, django_capture_on_commit_callbacks):
    from ledger import charge_lifecycle as lifecycle
    from ledger.charge_lifecycle import Answer
    from ledger.conflicts import LateSuccess, record_late_successes
    from ledger.models import ProviderConflict

    admin, seller = make_admin(), make_seller()
    request_and_approve(seller, 5_000, admin)
    settle_seller(seller_id=seller.pk)
    charges = [charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=100)[0] for _ in range(2)]
    settle_seller(seller_id=seller.pk)
    ids = [c.pk for c in charges]
    lifecycle.claim_for_sending(ids, first_check_after=60, external_id_prefix="adm-")
    lifecycle.record_answers([Answer(i, lifecycle.FAILED, "operator_declined") for i in ids])
    settle_seller(seller_id=seller.pk)
    assert record_late_successes([LateSuccess(i, "completed after all", {}) for i in ids]) == ids
    client.force_login(admin)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(
            "/admin/ledger/providerconflict/", {"action": "debit_sellers", "_selected_action": [ids[0]], "index": 0}
        )
    assert [getattr(cb, "ledger_seller_id", None) for cb in callbacks] == [seller.pk]  # the worker debits
    for _ in range(2):  # a second time changes nothing
        response = client.post(
            "/admin/ledger/providerconflict/",
            {"action": "book_losses", "_selected_action": ids, "index": 0},
            follow=True,
        )
    assert f"#{ids[0]}: debiting" in response.content.decode()
    assert dict(ProviderConflict.objects.values_list("charge_id", "status")) == {
        ids[0]: "debiting",
        ids[1]: "loss_booked",
    }
    settle_seller(seller_id=seller.pk)
    assert ProviderConflict.objects.get(charge_id=ids[0]).status == "debited"
    assert Account.objects.get(seller=seller).balance == 4_900
    assert_ledger_audit(seller.pk)
