"""The catalog's tasks through real worker processes started with the production commands: the
sync on the import worker, a number lookup on the fulfilment worker."""

import time

import pytest

from catalog.models import NumberLookup, Product
from catalog.tasks import lookup_number_task, sync_task

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the workers did not do it in time"
        time.sleep(0.2)


def test_the_workers_sync_the_catalog_and_look_numbers_up(workers, shipped):
    sync_task.delay()
    _wait(lambda: Product.objects.count() == len(shipped["products"]))
    lookup_number_task.delay("+2348031234567")
    _wait(lambda: NumberLookup.objects.filter(msisdn="+2348031234567", operator__isnull=False).exists())
    assert NumberLookup.objects.get(msisdn="+2348031234567").operator.name == "MTN Nigeria"
