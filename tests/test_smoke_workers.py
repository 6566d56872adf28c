import pytest

from ledger.models import Account
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit, wait_settled


@pytest.mark.django_db(transaction=True)
def test_worker_credits_an_approved_deposit(workers):
    admin = make_admin()
    seller = make_seller()
    request_and_approve(seller, 1000, admin)
    wait_settled(seller.pk, timeout=30)
    assert Account.objects.get(seller=seller).balance == 1000
    assert_ledger_audit()
