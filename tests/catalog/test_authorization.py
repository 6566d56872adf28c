"""The catalog's endpoints x anonymous, seller, another seller, approver, auditor and admin."""

import pytest
from rest_framework.test import APIClient

from catalog.models import Operator, Product
from tests.factories import client_for, make_admin, make_seller, make_staff

pytestmark = pytest.mark.django_db
ROLES = ["anonymous", "seller", "other", "approver", "auditor", "admin"]
NUMBER = "+254712345678"


@pytest.fixture
def world(synced):
    seller = make_seller()
    clients = {
        "anonymous": APIClient(),
        "seller": client_for(seller.user),
        "other": client_for(make_seller().user),
        "approver": client_for(make_staff("approver")),
        "auditor": client_for(make_staff("auditor")),
        "admin": client_for(make_admin()),
    }
    operator = Operator.objects.get(name="Safaricom")
    product = Product.objects.filter(operator=operator, current_version__kind="fixed").first()
    quote = clients["seller"].post("/api/v1/quotes/", {"phone_number": NUMBER, "product": product.pk}, format="json")
    assert quote.status_code == 201
    return clients, operator, product, quote.json()["id"]


CASES = [
    ("get", "/api/v1/products/?phone_number=%2B254712345678", None, (401, 200, 200, 200, 200, 200)),
    ("get", "/api/v1/operators/", None, (401, 200, 200, 200, 200, 200)),
    ("patch", "/api/v1/operators/{operator}/", {"enabled": True}, (401, 403, 403, 403, 403, 200)),
    ("patch", "/api/v1/products/{product}/", {"enabled": True}, (401, 403, 403, 403, 403, 200)),
    ("post", "/api/v1/quotes/", {"phone_number": NUMBER, "product": "{product}"}, (401, 201, 201, 403, 403, 403)),
    ("get", "/api/v1/quotes/{quote}/", None, (401, 200, 404, 403, 403, 403)),
    ("get", "/api/v1/price-rules/", None, (401, 403, 403, 200, 200, 200)),
    (
        "post",
        "/api/v1/price-rules/",
        {"operator": "{operator}", "method": "markup", "basis_points": 100},
        (401, 403, 403, 403, 403, 201),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_catalog_authorization_matrix(world, case):
    clients, operator, product, quote = world
    method, path, body, expected = case
    ids = {"operator": operator.pk, "product": product.pk, "quote": quote}
    path = path.format(**ids)
    if body is not None:
        body = {k: int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v for k, v in body.items()}
    for role, status in zip(ROLES, expected, strict=True):
        answer = (
            getattr(clients[role], method)(path, body, format="json") if body else getattr(clients[role], method)(path)
        )
        assert answer.status_code == status, (role, answer.content[:300])
