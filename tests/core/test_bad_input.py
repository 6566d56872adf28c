"""Bad input gets the contract's 4xx and error body, never a 5xx, and changes nothing."""

import pytest

from ledger.models import Charge, Deposit
from tests.factories import client_for, make_admin, make_seller

pytestmark = pytest.mark.django_db

BAD_AMOUNTS = [1.5, 5000.0, "5000", "abc", True, False, 0, -5, 10**13, None, [], {}]
BAD_PHONES = ["123", "abc", "", "02112345678", "+1", "0912123456789012345", 9121234567, None, "۰۹۱۲"]


@pytest.fixture
def seller_client():
    return client_for(make_seller().user)


def _assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_charge_with_bad_amount_is_refused(seller_client, amount):
    response = seller_client.post("/api/v1/charges/", {"phone_number": "09121234567", "amount": amount}, format="json")
    body = _assert_error(response, 400, "invalid")
    assert "amount" in body["errors"]
    assert not Charge.objects.exists()


@pytest.mark.parametrize("phone", BAD_PHONES)
def test_charge_with_bad_phone_is_refused(seller_client, phone):
    response = seller_client.post("/api/v1/charges/", {"phone_number": phone, "amount": 1000}, format="json")
    body = _assert_error(response, 400, "invalid")
    assert "phone_number" in body["errors"]
    assert not Charge.objects.exists()


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_deposit_with_bad_amount_is_refused(seller_client, amount):
    response = seller_client.post("/api/v1/deposits/", {"amount": amount}, format="json")
    _assert_error(response, 400, "invalid")
    assert not Deposit.objects.exists()


@pytest.mark.parametrize("body", [b"{", b"[1,2]", b'"text"', b"\xff\xfe", b"null"])
def test_malformed_json_is_refused(seller_client, body):
    response = seller_client.post("/api/v1/charges/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"parse_error", "invalid"}
    assert not Charge.objects.exists()


def test_phone_numbers_are_normalized_to_e164(seller_client):
    for raw in ["09121234567", "+98 912 123 4567", "0912-123-4567", "۰۹۱۲۱۲۳۴۵۶۷", "٠٩١٢١٢٣٤٥٦٧"]:
        response = seller_client.post("/api/v1/charges/", {"phone_number": raw, "amount": 1000}, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["phone_number"] == "+989121234567"
        assert response.headers["Location"] == f"/api/v1/charges/{response.json()['id']}/"


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/charges/999999999/"),
        ("get", "/api/v1/deposits/999999999/"),
        ("post", "/api/v1/deposits/999999999/approve/"),
        ("post", "/api/v1/deposits/999999999/reject/"),
    ],
)
def test_unknown_ids_answer_404(method, path):
    response = getattr(client_for(make_admin()), method)(path)
    _assert_error(response, 404, "not_found")


def test_bad_idempotency_key_is_refused(seller_client):
    response = seller_client.post(
        "/api/v1/charges/",
        {"phone_number": "09121234567", "amount": 1000},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x" * 256,
    )
    _assert_error(response, 400, "invalid")
    assert not Charge.objects.exists()


@pytest.mark.parametrize("query", ["status=bogus", "created_after=yesterday", "seller=abc", "page_size=abc"])
def test_bad_filters_never_produce_a_5xx(query):
    response = client_for(make_admin()).get(f"/api/v1/charges/?{query}")
    assert response.status_code in (200, 400), response.content
