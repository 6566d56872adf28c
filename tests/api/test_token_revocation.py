"""A password change revokes every token issued before it, access and refresh alike, whichever
way the password is changed: the admin site (a user's page, or one's own password page) or
`manage.py changepassword`. The API itself has no password change. Access tokens live 5 minutes."""

import uuid

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from ledger.models import Charge
from tests.api.helpers import assert_error
from tests.factories import PASSWORD, make_admin, make_seller

NEW_PASSWORD = "a-brand-new-password-7"
CHARGE = {"phone_number": "0912 123 4567", "amount": 700}


def _login(username: str, password: str = PASSWORD) -> dict:
    # Its own address: failed-login counters live in Redis.
    client = APIClient(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.1")
    response = client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def _change_in_admin_site(user) -> None:
    browser = Client()
    browser.force_login(make_admin())
    response = browser.post(
        f"/admin/auth/user/{user.pk}/password/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302, response.content[:2000]


def _change_own_in_admin_site(user) -> None:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    browser = Client()
    browser.force_login(user)
    response = browser.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content[:2000]


def _change_with_manage_py(user, monkeypatch) -> None:
    # The command asks the terminal twice; the terminal is the one thing not real here.
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.username)


@pytest.mark.django_db
@pytest.mark.parametrize("change", [_change_in_admin_site, _change_own_in_admin_site, _change_with_manage_py])
def test_password_change_revokes_access_and_refresh_tokens(change, monkeypatch):
    seller = make_seller()
    old = _login(seller.user.username)
    assert _bearer(old["access"]).get("/api/v1/me/").status_code == 200

    if change is _change_with_manage_py:
        change(seller.user, monkeypatch)
    else:
        change(seller.user)

    stale = _bearer(old["access"])
    assert_error(stale.get("/api/v1/me/"), 401, "not_authenticated")
    assert_error(stale.post("/api/v1/charges/", CHARGE, format="json"), 401, "not_authenticated")
    assert not Charge.objects.filter(seller=seller).exists()
    refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": old["refresh"]}, format="json")
    assert_error(refreshed, 401, "not_authenticated")

    new = _login(seller.user.username, NEW_PASSWORD)
    assert _bearer(new["access"]).get("/api/v1/me/").status_code == 200
    assert _bearer(new["access"]).post("/api/v1/charges/", CHARGE, format="json").status_code == 202
    fresh = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": new["refresh"]}, format="json")
    assert fresh.status_code == 200 and _bearer(fresh.json()["access"]).get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_access_tokens_live_five_minutes_and_refresh_tokens_a_day():
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

    tokens = _login(make_seller().user.username)
    access, refresh = AccessToken(tokens["access"]), RefreshToken(tokens["refresh"])
    assert access["exp"] - access["iat"] == 300
    assert refresh["exp"] - refresh["iat"] == 86400
