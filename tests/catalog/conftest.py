"""The catalog tests sync from the session's real sandbox process; a test that changes the
sandbox's catalog gets it back as shipped afterwards."""

import json

import pytest

from catalog.services.sync import catalog_sync
from provider_sandbox.catalog import SHIPPED
from providers import get_provider


@pytest.fixture(autouse=True)
def house_catalog():
    """These tests sell from the sandbox's catalog as synced, without the house catalog beside it."""


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
