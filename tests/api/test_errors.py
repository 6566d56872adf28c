"""Every failure answers the contract's one error shape, and no input reaches a 5xx."""

import json

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from ledger.models import Charge
from tests.api.helpers import assert_error, bearer
from tests.factories import make_seller


@pytest.fixture
def seller_client(db):
    return bearer(make_seller().user)


def test_unknown_url_under_api_is_a_json_404(seller_client):
    assert_error(seller_client.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(APIClient().get("/api/v2/"), 404, "not_found")


def test_ids_too_large_for_the_database_are_404(seller_client):
    assert_error(seller_client.get("/api/v1/charges/99999999999999999999999/"), 404, "not_found")
    assert_error(seller_client.get("/api/v1/charges/999999999999999999/"), 404, "not_found")


def test_wrong_method_is_405(seller_client):
    response = seller_client.delete("/api/v1/charges/")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_oversized_body_is_413(seller_client):
    response = seller_client.post(
        "/api/v1/charges/", {"phone_number": "09121234567", "amount": 1, "reference": "x" * 5000}, format="json"
    )
    assert_error(response, 413, "request_too_large")
    assert not Charge.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        "seller=99999999999999999999999",
        "seller=abc",
        "created_after=not-a-date",
        "created_after=0001-01-01T00:00:00Z",
        "seq_after=-1",
        "kind=bogus",
        "status=bogus",
        "batch=1e400",
    ],
)
def test_bad_filters_are_400(seller_client, query):
    path = "/api/v1/transactions/" if "seq" in query or "kind" in query else "/api/v1/charges/"
    assert_error(seller_client.get(f"{path}?{query}"), 400, "invalid")


def test_bad_pages_and_cursors_are_404(seller_client):
    assert_error(seller_client.get("/api/v1/charges/?page=999"), 404, "not_found")
    assert_error(seller_client.get("/api/v1/transactions/?cursor=garbage"), 404, "not_found")


def test_malformed_json_and_wrong_media_type(seller_client):
    response = seller_client.post("/api/v1/charges/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")
    response = seller_client.post("/api/v1/charges/", "a=b", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_bad_idempotency_keys_are_400(seller_client, key):
    response = seller_client.post(
        "/api/v1/charges/", {"phone_number": "09121234567", "amount": 10}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert_error(response, 400, "invalid")
    assert not Charge.objects.exists()


def test_dates_with_offsets_postgresql_refuses_still_filter(seller_client):
    # Found by the schema fuzzer: +20:55 is a valid offset to Python, not to PostgreSQL.
    response = seller_client.get("/api/v1/charges/?created_after=2026-09-19T14%3A58%3A37%2B20%3A55")
    assert response.status_code == 200 and response.json()["results"] == []


def test_django_level_errors_under_api_are_json_and_elsewhere_html(rf):
    from core.api import handlers

    for handler, status, code in [
        (handlers.server_error, 500, "server_error"),
        (handlers.bad_request, 400, "bad_request"),
        (handlers.permission_denied, 403, "permission_denied"),
    ]:
        args = () if handler is handlers.server_error else (None,)
        response = handler(rf.get("/api/v1/charges/"), *args)
        assert response.status_code == status and response["Content-Type"] == "application/json"
        assert json.loads(response.content)["code"] == code
    assert handlers.server_error(rf.get("/admin/"))["Content-Type"].startswith("text/html")
