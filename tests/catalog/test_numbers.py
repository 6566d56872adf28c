"""Number to operator with no network call in the request: the longest numbering prefix, the
provider's cached lookup (run by a worker), and the seller's explicit operator, which wins."""

import pytest

from catalog.errors import NoOperatorError
from catalog.models import NumberingPrefix, NumberLookup, Operator
from catalog.selectors import operator_for_number
from catalog.services.lookups import number_lookup_record
from providers import get_provider
from tests.factories import client_for, make_seller

pytestmark = pytest.mark.django_db


def test_the_longest_prefix_wins(synced):
    mci, irancell = Operator.objects.get(name__startswith="MCI"), Operator.objects.get(name="Irancell")
    assert operator_for_number(msisdn="+989121234567").operator == mci
    NumberingPrefix.objects.create(operator=irancell, prefix="989121")  # a range ported as a block
    resolved = operator_for_number(msisdn="+989121234567")
    assert (resolved.operator, resolved.source) == (irancell, "prefix")
    assert operator_for_number(msisdn="+989131234567").operator == mci


def test_a_disabled_operator_serves_no_number(synced):
    Operator.objects.filter(name__startswith="MCI").update(enabled=False)
    with pytest.raises(NoOperatorError):
        operator_for_number(msisdn="+989121234567")


def test_an_explicit_operator_wins_over_prefix_and_lookup(synced):
    irancell = Operator.objects.get(name="Irancell")
    resolved = operator_for_number(msisdn="+989121234567", operator_id=irancell.pk)
    assert (resolved.operator, resolved.source) == (irancell, "explicit")


def test_the_listing_names_the_explicit_operator(synced):
    irancell = Operator.objects.get(name="Irancell")
    answer = client_for(make_seller().user).get(
        "/api/v1/products/", {"phone_number": "+989121234567", "operator": irancell.pk}
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["operator"] == {"id": irancell.pk, "name": "Irancell", "country": "IRN", "source": "explicit"}
    assert {row["operator"] for row in answer.json()["results"]} == {irancell.pk}


def test_an_operator_of_another_country_is_refused(synced):
    safaricom = Operator.objects.get(name="Safaricom")
    answer = client_for(make_seller().user).get(
        "/api/v1/products/", {"phone_number": "+989121234567", "operator": safaricom.pk}
    )
    assert answer.status_code == 400 and answer.json()["code"] == "operator_mismatch"


def test_a_number_no_operator_serves_is_400_no_operator(synced):
    client = client_for(make_seller().user)
    answer = client.get("/api/v1/products/", {"phone_number": "+447911123456"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "no_operator"


def test_the_providers_lookup_is_cached_and_then_used(synced):
    """The worker's lookup (here called directly, as the task does) against the real sandbox."""
    assert not NumberLookup.objects.exists()
    lookup = number_lookup_record(provider=get_provider(), msisdn="+2348031234567")
    assert lookup.operator.name == "MTN Nigeria" and lookup.expires_at > lookup.looked_up_at
    # The provider says another operator (a ported number): the cache wins over the prefix.
    glo = Operator.objects.get(name="Glo")
    NumberLookup.objects.filter(pk=lookup.pk).update(operator=glo)
    resolved = operator_for_number(msisdn="+2348031234567")
    assert (resolved.operator, resolved.source) == (glo, "lookup")


def test_an_unknown_number_at_the_provider_records_no_operator(synced):
    lookup = number_lookup_record(provider=get_provider(), msisdn="+447911123456")
    assert lookup.operator is None
    with pytest.raises(NoOperatorError):
        operator_for_number(msisdn="+447911123456")
