"""Every endpoint x anonymous, seller, another seller, approver, auditor and admin.

The seller owns every object in the paths; "other" is a second seller, who must get 404 for
those objects (never 403, never the data)."""

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from rest_framework.test import APIClient

from core.services import api_key_issue
from devstack.house_catalog import house_catalog_loaded, load_house_catalog
from ledger.models import Charge
from ledger.services.batch_import import batch_import_run
from ledger.services.batch_upload import batch_upload
from ledger.services.charges import charge_submit
from ledger.services.deposits import deposit_request
from ledger.statements.build import statement_build, statement_request
from tests.api.helpers import assert_error, bearer
from tests.factories import make_admin, make_seller, make_staff

_CHARGE_LIST = b"phone_number,amount\n09121234567,100\n"
ROLES = ["anonymous", "seller", "other", "approver", "auditor", "admin"]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: tuple[int, int, int, int, int, int]  # in the order of ROLES
    body: dict | str | None = None  # "multipart": a one-row charge list upload


def _charge_body():
    return {"phone_number": "09121234567", "amount": 1000}


CASES = [
    Case("get", "/api/v1/me/", (401, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/sellers/", (401, 403, 403, 200, 200, 200)),
    Case(
        "post",
        "/api/v1/sellers/",
        (401, 403, 403, 403, 403, 201),
        {"username": "new-seller", "password": "long-enough-1", "name": "N"},
    ),
    Case("get", "/api/v1/sellers/{seller}/", (401, 403, 403, 200, 200, 200)),
    Case("get", "/api/v1/sellers/{seller}/reconcile/", (401, 403, 403, 200, 200, 200)),
    Case("get", "/api/v1/sellers/{seller}/api-keys/", (401, 403, 403, 403, 403, 200)),
    Case("post", "/api/v1/sellers/{seller}/api-keys/", (401, 403, 403, 403, 403, 201), {"name": "erp"}),
    Case("delete", "/api/v1/sellers/{seller}/api-keys/{key}/", (401, 403, 403, 403, 403, 204)),
    Case("get", "/api/v1/staff/", (401, 403, 403, 403, 403, 200)),
    Case(
        "post",
        "/api/v1/staff/",
        (401, 403, 403, 403, 403, 201),
        {"username": "new-staff", "password": "long-enough-1", "role": "auditor"},
    ),
    Case("get", "/api/v1/staff/{staff}/", (401, 403, 403, 403, 403, 200)),
    Case("patch", "/api/v1/staff/{staff}/", (401, 403, 403, 403, 403, 200), {"role": "approver"}),
    Case("get", "/api/v1/deposits/", (401, 200, 200, 200, 200, 200)),
    Case("post", "/api/v1/deposits/", (401, 201, 201, 403, 403, 403), {"amount": 5000}),
    Case("get", "/api/v1/deposits/{deposit}/", (401, 200, 404, 200, 200, 200)),
    Case("post", "/api/v1/deposits/{deposit}/approve/", (401, 403, 403, 202, 403, 202)),
    Case("post", "/api/v1/deposits/{deposit}/reject/", (401, 403, 403, 200, 403, 200), {"reason": "no"}),
    Case("get", "/api/v1/charges/", (401, 200, 200, 200, 200, 200)),
    Case("post", "/api/v1/charges/", (401, 202, 202, 403, 403, 403), _charge_body()),
    Case("get", "/api/v1/charges/{charge}/", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/charge-batches/", (401, 200, 200, 200, 200, 200)),
    Case("post", "/api/v1/charge-batches/", (401, 202, 202, 403, 403, 403), "multipart"),
    Case("get", "/api/v1/charge-batches/{batch}/", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/charge-batches/{batch}/results/", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/transactions/", (401, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/transactions/export/", (401, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/balance/?seller={seller}", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/checkpoints/", (401, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/statements/public-key/", (200, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/statements/", (401, 200, 200, 200, 200, 200)),
    Case(
        "post",
        "/api/v1/statements/",
        (401, 202, 202, 400, 400, 400),
        {"period_start": "2026-01-01T00:00:00Z", "period_end": "2026-02-01T00:00:00Z"},
    ),
    Case("get", "/api/v1/statements/{statement}/", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/statements/{statement}/download/json/", (401, 200, 404, 200, 200, 200)),
    Case("get", "/api/v1/ops/queues/", (401, 403, 403, 403, 403, 200)),
    Case("get", "/api/v1/ops/metrics/", (401, 403, 403, 403, 403, 200)),
    Case("get", "/api/v1/ops/conflicts/", (401, 403, 403, 403, 403, 200)),
    # No conflict on the charge: an admin is told so; nobody else may ask.
    Case("post", "/api/v1/ops/conflicts/{charge}/settle/", (401, 403, 403, 403, 403, 404), {"action": "debit"}),
    Case("get", "/api/v1/health/", (200, 200, 200, 200, 200, 200)),
    Case("get", "/api/v1/schema/", (200, 200, 200, 200, 200, 200)),
]

_CODES = {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}


@pytest.fixture(scope="module")
def shared_world(django_db_setup, django_db_blocker):
    """Built once for the module inside a transaction of its own, which each test's transaction
    nests in as a savepoint (what Django's `TestCase.setUpTestData` does): every test starts from
    the same rows, and whatever it changes is rolled back with it."""
    with django_db_blocker.unblock(), transaction.atomic():
        if not house_catalog_loaded():
            load_house_catalog()
        yield _build_world()
        transaction.set_rollback(True)


@pytest.fixture
def world(shared_world, db):
    return shared_world


def _build_world():
    seller, other = make_seller(), make_seller()
    deposit, _ = deposit_request(seller=seller, amount=10_000)
    charge, _ = charge_submit(seller_id=seller.pk, phone_number="+989121234567", amount=100)
    api_key, _ = api_key_issue(seller=seller, name="erp")
    batch, _ = batch_upload(seller=seller, file=io.BytesIO(_CHARGE_LIST), filename="list.csv")
    batch_import_run(batch_id=batch.pk)
    statement, _ = statement_request(
        seller_id=seller.pk, period_start=datetime(2025, 1, 1, tzinfo=UTC), period_end=datetime(2025, 2, 1, tzinfo=UTC)
    )
    statement_build(statement_id=statement.pk)
    users = {
        "seller": seller.user,
        "other": other.user,
        "approver": make_staff("approver"),
        "auditor": make_staff("auditor"),
        "admin": make_admin(),
    }
    ids = {
        "seller": seller.pk,
        "deposit": deposit.pk,
        "charge": charge.pk,
        "key": api_key.pk,
        "batch": batch.pk,
        "staff": make_staff("auditor").pk,
        "statement": statement.pk,
    }
    return users, ids


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_authorization_matrix(world, case: Case, role: str):
    users, ids = world
    client = APIClient() if role == "anonymous" else bearer(users[role])
    path = case.path.format(**ids)
    if case.body == "multipart":
        upload = SimpleUploadedFile("list.csv", _CHARGE_LIST, content_type="text/csv")
        response = client.post(path, {"file": upload}, format="multipart")
    else:
        response = getattr(client, case.method)(path, case.body, format="json")
    expected = case.expected[ROLES.index(role)]
    if expected in _CODES:
        assert_error(response, expected, _CODES[expected])
    else:
        assert response.status_code == expected, (response.status_code, getattr(response, "data", None))


def test_seller_lists_show_only_its_own_rows(world):
    users, ids = world
    own = bearer(users["seller"]).get("/api/v1/charges/").json()["results"]
    theirs = bearer(users["other"]).get("/api/v1/charges/").json()["results"]
    assert {row["seller"] for row in own} == {ids["seller"]}
    assert sorted(row["id"] for row in own) == sorted(Charge.objects.values_list("id", flat=True))
    assert ids["charge"] in {row["id"] for row in own}
    assert theirs == []
    # Asking for another seller by filter does not widen a seller's scope.
    sneaky = bearer(users["other"]).get(f"/api/v1/charges/?seller={ids['seller']}").json()["results"]
    assert sneaky == []
    assert Charge.objects.count() == 2  # the single charge and the batch's one row
