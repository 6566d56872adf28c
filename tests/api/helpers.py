"""Clients authenticated the way integrators authenticate: a real JWT or a real API key."""

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from core.services import api_key_issue


def bearer(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def api_key_client(seller) -> APIClient:
    _, key = api_key_issue(seller=seller, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
