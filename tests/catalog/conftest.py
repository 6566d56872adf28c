"""The catalog tests sync from the session's real sandbox process; a test that changes the
sandbox's catalog gets it back as shipped afterwards."""

import json

import pytest

from catalog.models import Country, Operator, Product, ProductRoute, ProductVersion
from catalog.services.sync import catalog_sync
from devstack.house_catalog import PROVIDER
from provider_sandbox.catalog import SHIPPED
from providers import get_provider


@pytest.fixture(autouse=True)
def house_catalog(request):
    """These tests sell from the sandbox's catalog as synced, without the house catalog beside it:
    the one committed with the test database (root conftest.py) is removed in the test's own
    transaction, or in a transactional test until its flush."""
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    )
    if not uses_db:
        return
    request.getfixturevalue("db")
    house = Product.objects.filter(provider=PROVIDER)
    house.update(current_version=None)
    ProductRoute.objects.filter(product__in=house).delete()
    ProductVersion.objects.filter(product__in=house).delete()
    house.delete()
    Operator.objects.filter(provider=PROVIDER).delete()  # and their numbering prefixes
    Country.objects.filter(operators=None).delete()


@pytest.fixture
def shipped() -> dict:
    return json.loads(SHIPPED.read_text())


@pytest.fixture
def sandbox_catalog(session_sandbox):
    """The sandbox, whose catalog the test may replace (`replace(data)`); reset afterwards."""

    def replace(data: dict) -> None:
        session_sandbox.session.post(
            f"{session_sandbox.url}/_sandbox/catalog", json=data, timeout=30
        ).raise_for_status()

    session_sandbox.replace_catalog = replace
    yield session_sandbox
    session_sandbox.session.post(
        f"{session_sandbox.url}/_sandbox/catalog", json={"reset": True}, timeout=30
    ).raise_for_status()


@pytest.fixture
def synced(db, session_sandbox):
    """The shipped catalog, synced."""
    return catalog_sync(provider=get_provider())
