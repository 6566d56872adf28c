import uuid

import pytest
from django.test import override_settings
from rest_framework import exceptions
from rest_framework.test import APIClient
from rest_framework_simplejwt import authentication as simplejwt_authentication
from rest_framework_simplejwt.tokens import AccessToken

from core.authentication import JWTAuthentication
from core.models import SellerAPIKey
from ledger.models import Charge
from tests.api.helpers import api_key_client, assert_error, bearer
from tests.factories import PASSWORD, make_admin, make_seller, make_staff

CHARGE = {"phone_number": "0912 123 4567", "amount": 700}


def _client_from(address: str) -> APIClient:
    # A fresh address per test: the counters live in Redis and outlive a test run.
    return APIClient(REMOTE_ADDR=address)


def _address() -> str:
    return f"127.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


@pytest.mark.django_db
def test_login_and_refresh_give_tokens_that_authenticate():
    seller = make_seller()
    client = _client_from(_address())
    tokens = client.post("/api/v1/auth/token/", {"username": seller.user.username, "password": PASSWORD}, format="json")
    assert tokens.status_code == 200 and set(tokens.json()) == {"access", "refresh"}
    refreshed = client.post("/api/v1/auth/token/refresh/", {"refresh": tokens.json()["refresh"]}, format="json")
    assert refreshed.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    me = client.get("/api/v1/me/").json()
    assert me["role"] == "seller" and me["seller"] == {"id": seller.pk, "name": seller.name, "balance": 0, "held": 0}


@pytest.mark.django_db
def test_wrong_password_and_garbage_tokens_answer_401():
    seller = make_seller()
    client = _client_from(_address())
    assert_error(
        client.post("/api/v1/auth/token/", {"username": seller.user.username, "password": "nope"}, format="json"),
        401,
        "not_authenticated",
    )
    assert_error(
        client.post("/api/v1/auth/token/refresh/", {"refresh": "garbage"}, format="json"), 401, "not_authenticated"
    )
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert_error(client.get("/api/v1/me/"), 401, "not_authenticated")
    client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert_error(client.get("/api/v1/me/"), 401, "not_authenticated")


@pytest.mark.django_db
def test_api_key_is_shown_once_stored_hashed_authenticates_its_seller_and_dies_on_revoke():
    admin, seller = bearer(make_admin()), make_seller()
    created = admin.post(f"/api/v1/sellers/{seller.pk}/api-keys/", {"name": "erp"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert set(body) >= {"id", "name", "prefix", "key", "created_at"} and body["key"].startswith(body["prefix"] + ".")
    stored = SellerAPIKey.objects.get(pk=body["id"])
    assert body["key"] not in stored.hashed_key and stored.seller_id == seller.pk
    listed = admin.get(f"/api/v1/sellers/{seller.pk}/api-keys/").json()["results"]
    assert [row["id"] for row in listed] == [body["id"]] and "key" not in listed[0]

    integrator = APIClient()
    integrator.credentials(HTTP_AUTHORIZATION=f"Api-Key {body['key']}")
    charged = integrator.post("/api/v1/charges/", CHARGE, format="json")
    assert charged.status_code == 202 and charged.json()["seller"] == seller.pk
    assert charged["Location"] == f"/api/v1/charges/{charged.json()['id']}/"

    assert admin.delete(f"/api/v1/sellers/{seller.pk}/api-keys/{body['id']}/").status_code == 204
    assert_error(integrator.post("/api/v1/charges/", CHARGE, format="json"), 401, "not_authenticated")
    assert Charge.objects.filter(seller=seller).count() == 1


@pytest.mark.django_db
def test_api_key_of_another_seller_is_404_for_that_seller_path():
    admin, seller, other = bearer(make_admin()), make_seller(), make_seller()
    key_id = admin.post(f"/api/v1/sellers/{seller.pk}/api-keys/", {"name": "erp"}, format="json").json()["id"]
    assert_error(admin.delete(f"/api/v1/sellers/{other.pk}/api-keys/{key_id}/"), 404, "not_found")
    assert_error(admin.get("/api/v1/sellers/999999999/api-keys/"), 404, "not_found")


@pytest.mark.django_db
def test_deactivated_seller_is_refused_with_its_token_and_its_key():
    seller = make_seller()
    by_token, by_key = bearer(seller.user), api_key_client(seller)
    assert by_token.get("/api/v1/me/").status_code == 200 and by_key.get("/api/v1/me/").status_code == 200
    seller.user.is_active = False
    seller.user.save()
    assert_error(by_token.post("/api/v1/charges/", CHARGE, format="json"), 401, "not_authenticated")
    assert_error(by_key.post("/api/v1/charges/", CHARGE, format="json"), 401, "not_authenticated")
    assert not Charge.objects.filter(seller=seller).exists()


@pytest.mark.django_db
@override_settings(SELLER_THROTTLE_RATE="3/m")
def test_seller_requests_are_throttled_across_its_tokens_and_keys():
    seller = make_seller()
    by_token, by_key = bearer(seller.user), api_key_client(seller)
    assert [c.get("/api/v1/charges/").status_code for c in (by_token, by_key, by_token)] == [200, 200, 200]
    response = by_key.get("/api/v1/charges/")
    assert_error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    # Another seller has its own budget.
    assert bearer(make_seller().user).get("/api/v1/charges/").status_code == 200


@pytest.mark.parametrize("rate", ["100/s", "6000/min", "10/15m", "5/2h", "1/d"])
def test_rates_parse(rate):
    from core.throttling import parse_rate

    limit, window = parse_rate(rate)
    assert limit >= 1 and window >= 1


@pytest.mark.parametrize("rate", ["lots", "0/m", "10/", "10/fortnight", ""])
def test_malformed_rates_stop_the_process_at_start(rate, settings):
    from django.core.exceptions import ImproperlyConfigured

    from core.apps import _check_rates

    settings.SELLER_THROTTLE_RATE = rate
    with pytest.raises(ImproperlyConfigured):
        _check_rates()


@pytest.mark.django_db
def test_rate_limits_let_requests_through_when_their_store_is_down(settings):
    from core import throttling

    settings.THROTTLE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    throttling._client.cache_clear()
    throttling._hit_script.reset()
    try:
        seller = make_seller()
        assert bearer(seller.user).get("/api/v1/charges/").status_code == 200
        wrong = {"username": seller.user.username, "password": "nope"}
        assert_error(
            _client_from(_address()).post("/api/v1/auth/token/", wrong, format="json"), 401, "not_authenticated"
        )
    finally:
        throttling._client.cache_clear()
        throttling._hit_script.reset()


def _verdict(authentication, raw: bytes):
    """What an authentication class makes of a token: the user's id, or the refusal's code."""
    try:
        return authentication.get_user(authentication.get_validated_token(raw)).pk
    except exceptions.AuthenticationFailed as exc:
        return exc.detail["code"] if isinstance(exc.detail, dict) else exc.get_codes()


@pytest.mark.django_db
def test_our_jwt_authentication_accepts_and_refuses_what_simplejwts_own_does():
    """Ours loads the user with its seller and groups in one query and reuses simplejwt's
    revocation digest: pinned here against simplejwt's stock class, so an upgrade that changes
    what a refusal means fails this test."""
    user = make_staff("auditor")  # a seller's user cannot be deleted
    raw = str(AccessToken.for_user(user)).encode()
    ours, stock = JWTAuthentication(), simplejwt_authentication.JWTAuthentication()

    def both():
        return _verdict(ours, raw), _verdict(stock, raw)

    assert both() == (user.pk, user.pk)
    user.set_password("another-long-password")
    user.save(update_fields=["password"])
    assert both() == ("password_changed", "password_changed")
    raw = str(AccessToken.for_user(user)).encode()
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert both() == ("user_inactive", "user_inactive")
    user.delete()
    assert both() == ("user_not_found", "user_not_found")
