"""The settle's hand-off to the fulfilment workers: after its commit, the charges it reserved leave
in `ledger.fulfil` tasks of PROVIDER_BATCH, every charge once, in order, published together, each
task showing Flower its arguments."""

import pytest
from celery.signals import before_task_publish

from core.db.prepared import array_literal
from ledger.models import Charge
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit
from workers.dispatch import FULFIL

pytestmark = pytest.mark.django_db


@pytest.fixture
def published():
    """(kwargs, headers) of every `ledger.fulfil` task this process publishes during the test."""
    tasks = []

    def record(sender=None, body=None, headers=None, **_):
        if sender == FULFIL:
            tasks.append((body[1], headers))

    before_task_publish.connect(record, weak=False)
    yield tasks
    before_task_publish.disconnect(record)


def test_the_charges_one_settle_reserved_leave_after_its_commit_in_tasks_of_provider_batch(
    settings, published, django_capture_on_commit_callbacks
):
    settings.PROVIDER_BATCH = 50
    seller = make_seller()
    request_and_approve(seller, 1_000_000, make_admin())
    for n in range(120):
        charge_submit(seller_id=seller.pk, phone_number=f"+98912123{n:04d}", amount=100)

    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        settle_seller(seller_id=seller.pk)
        assert published == []  # nothing leaves before the settle commits
    for callback in after_commit:
        callback()

    reserved = list(Charge.objects.filter(seller=seller, stage="reserved").order_by("id").values_list("id", flat=True))
    assert len(reserved) == 120
    assert [len(kwargs["charge_ids"]) for kwargs, _ in published] == [50, 50, 20]
    assert [charge for kwargs, _ in published for charge in kwargs["charge_ids"]] == reserved
    assert all(headers["kwargsrepr"] == repr(kwargs) for kwargs, headers in published)
    assert_ledger_audit()


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([1, 2, 3], "{1,2,3}"),
        ((None, 5, None), "{NULL,5,NULL}"),
        ([], "{}"),
        (["charge", "release"], "{charge,release}"),
    ],
)
def test_an_array_literal_names_each_value_and_null(values, literal):
    assert array_literal(values) == literal
    assert array_literal(iter(values)) == literal  # a generator too, read once
