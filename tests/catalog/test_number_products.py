"""Three readings of "which operator sells to this number" must agree: `operator_for_number` (the
listing and the quotes, through the ORM), `products_for_number` (a charge POST, one prepared
statement) and `CatalogSnapshot` (a charge list's import, in memory). Compared on the synced
sandbox catalog over numbers of every operator's prefixes, numbers no operator serves, numbers the
provider's lookup placed elsewhere (fresh and expired), named operators, and a disabled operator."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.errors import NoOperatorError, OperatorMismatchError, UnknownOperatorError
from catalog.models import NumberingPrefix, NumberLookup, Operator
from catalog.sales import CatalogSnapshot
from catalog.selectors import operator_for_number, products_for_number, products_on_sale
from tests.factories import make_seller

pytestmark = pytest.mark.django_db


def _by_orm(msisdn: str, named: int | None):
    try:
        operator = operator_for_number(msisdn=msisdn, operator_id=named).operator
    except (NoOperatorError, UnknownOperatorError, OperatorMismatchError) as exc:
        return type(exc).__name__
    return operator.pk, [p.pk for p in products_on_sale(operator=operator)]


def _by_statement(msisdn: str, named: int | None):
    try:
        products = products_for_number(msisdn=msisdn, operator_id=named)
    except OperatorMismatchError as exc:
        return type(exc).__name__
    if not products:
        return _by_orm(msisdn, named)  # what the sale does to name the error
    return products[0].operator_id, [p.pk for p in products]


def _by_snapshot(snapshot: CatalogSnapshot, msisdn: str, named: int | None):
    try:
        operator_id = snapshot.operator_id(msisdn, named)
    except (NoOperatorError, UnknownOperatorError, OperatorMismatchError) as exc:
        return type(exc).__name__
    return operator_id, [p.pk for p in snapshot.products[operator_id]]


def test_the_charge_the_listing_and_the_import_find_the_same_operator_and_products(synced):
    rng = random.Random(7)
    numbers = [
        f"+{prefix}{rng.randrange(10 ** (11 - len(prefix)), 10 ** (12 - len(prefix)))}"
        for prefix in NumberingPrefix.objects.values_list("prefix", flat=True)
    ]
    numbers += ["+447911123456", "+15551234567", "+98", "+2348"]
    operators = list(Operator.objects.order_by("id"))
    now = timezone.now()
    for msisdn in numbers[:20]:  # the provider placed these elsewhere: a ported number
        NumberLookup.objects.create(
            msisdn=msisdn,
            provider="sandbox",
            operator=rng.choice(operators),
            looked_up_at=now,
            expires_at=now + timedelta(days=1),
        )
    for msisdn in numbers[20:30]:  # an answer no longer trusted
        NumberLookup.objects.create(
            msisdn=msisdn, provider="sandbox", operator=rng.choice(operators), looked_up_at=now - timedelta(days=9),
            expires_at=now - timedelta(days=2),
        )  # fmt: skip
    Operator.objects.filter(name="Glo").update(enabled=False)
    snapshot = CatalogSnapshot(seller_id=make_seller().pk)

    compared = 0
    for msisdn in numbers:
        for named in (None, rng.choice(operators).pk):
            orm = _by_orm(msisdn, named)
            assert _by_statement(msisdn, named) == orm, (msisdn, named)
            assert _by_snapshot(snapshot, msisdn, named) == orm, (msisdn, named)
            compared += 1
    assert compared > 250
