"""The sandbox's DT One and Reloadly dialects against the real process, beside its own: one record
and one account under three contracts, each provider's authentication and errors; and the settings
that choose the adapter."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from providers import get_provider
from providers.dvs import DVSProvider
from providers.reloadly import ReloadlyProvider
from tests.provider.conftest import BALANCE, KEY, SECRET_KEY, msisdn

AUTH = (KEY, SECRET_KEY)


def _dvs_create(sandbox, external_id, number=None, auth=AUTH, **more):
    body = {
        "external_id": external_id,
        "product_id": 10101,
        "auto_confirm": True,
        "credit_party_identifier": {"mobile_number": number or msisdn()},
    } | more
    return requests.post(f"{sandbox.url}/dvs/v1/async/transactions", json=body, auth=auth, timeout=5)


def _token(sandbox, **more) -> requests.Response:
    body = {"client_id": KEY, "client_secret": SECRET_KEY, "grant_type": "client_credentials", "audience": "x"} | more
    return requests.post(f"{sandbox.url}/reloadly/oauth/token", json=body, timeout=5)


def test_one_record_under_three_dialects(sandbox):
    tag = uuid.uuid4().hex[:12]
    assert (
        requests.post(
            f"{sandbox.url}/v1/transactions",
            json={"external_id": f"own-{tag}", "msisdn": msisdn(), "amount": 5},
            timeout=5,
        ).status_code
        == 201
    )
    assert _dvs_create(sandbox, f"dvs-{tag}").status_code == 201
    token = _token(sandbox).json()["access_token"]
    topup = {
        "operatorId": 202,
        "amount": "260000",
        "useLocalAmount": True,
        "customIdentifier": f"rld-{tag}",
        "recipientPhone": {"countryCode": "IR", "number": msisdn().lstrip("+")},
    }
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.post(f"{sandbox.url}/reloadly/topups", json=topup, headers=headers, timeout=5).status_code == 200
    record = {t["external_id"]: t for t in sandbox.transactions()}
    assert {f"own-{tag}", f"dvs-{tag}", f"rld-{tag}"} <= set(record)
    # Each id is one transaction whichever dialect asks again.
    assert _dvs_create(sandbox, f"own-{tag}").json()["errors"][0]["code"] == 1007001
    assert (
        requests.post(
            f"{sandbox.url}/v1/transactions",
            json={"external_id": f"dvs-{tag}", "msisdn": msisdn(), "amount": 5},
            timeout=5,
        ).status_code
        == 409
    )
    # The sandbox's own dialect has no prices: it draws nothing; the others draw what they cost.
    assert sandbox.balance()["available"] == BALANCE - 81 - 42


def test_dvs_authentication_and_errors(sandbox):
    unauthorised = _dvs_create(sandbox, "x", auth=("sandbox", "wrong"))
    assert (unauthorised.status_code, unauthorised.json()) == (
        401,
        {"errors": [{"code": 1000401, "message": "Unauthorized"}]},
    )
    assert requests.get(f"{sandbox.url}/dvs/v1/balances", timeout=5).status_code == 401
    missing = _dvs_create(sandbox, "y", product_id=999)
    assert (missing.status_code, missing.json()["errors"][0]["code"]) == (404, 1003001)
    bad_number = _dvs_create(sandbox, "z", number="12")
    assert (bad_number.status_code, bad_number.json()["errors"][0]["code"]) == (400, 1005003)
    long_id = _dvs_create(sandbox, "i" * 41)
    assert long_id.status_code == 400
    now = datetime.now(UTC)
    window = {"from_date": (now - timedelta(hours=25)).isoformat(), "to_date": now.isoformat()}
    assert requests.get(f"{sandbox.url}/dvs/v1/transactions", params=window, auth=AUTH, timeout=5).status_code == 400
    assert requests.get(f"{sandbox.url}/dvs/v1/nowhere", auth=AUTH, timeout=5).status_code == 404


def test_dvs_confirm_and_cancel_only_once(sandbox):
    created = _dvs_create(sandbox, f"c-{uuid.uuid4().hex[:20]}", auto_confirm=False).json()
    base = f"{sandbox.url}/dvs/v1"
    confirmed = requests.post(f"{base}/async/transactions/{created['id']}/confirm", auth=AUTH, timeout=5)
    assert (confirmed.status_code, confirmed.json()["status"]["message"]) == (202, "COMPLETED")
    again = requests.post(f"{base}/async/transactions/{created['id']}/confirm", auth=AUTH, timeout=5)
    assert again.json()["errors"][0]["code"] == 1007002
    cancel = requests.post(f"{base}/transactions/{created['id']}/cancel", auth=AUTH, timeout=5)
    assert cancel.json()["errors"][0]["code"] == 1007007


def test_reloadly_tokens_are_checked_and_expire(sandbox):
    assert _token(sandbox, client_secret="nope").json()["errorCode"] == "INVALID_CREDENTIALS"
    assert _token(sandbox, grant_type="password").status_code == 400
    balance = f"{sandbox.url}/reloadly/accounts/balance"
    assert requests.get(balance, timeout=5).json()["errorCode"] == "INVALID_TOKEN"
    sandbox.configure(token_seconds=0.5)
    issued = _token(sandbox).json()
    assert issued["token_type"] == "Bearer"
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    assert requests.get(balance, headers=headers, timeout=5).json()["balance"] == BALANCE / 100
    time.sleep(0.6)
    expired = requests.get(balance, headers=headers, timeout=5)
    assert (expired.status_code, expired.json()["errorCode"]) == (401, "TOKEN_EXPIRED")


def test_reloadly_refuses_what_the_operator_does_not_sell(sandbox):
    headers = {"Authorization": f"Bearer {_token(sandbox).json()['access_token']}"}
    base = {"operatorId": 202, "useLocalAmount": True, "customIdentifier": f"n-{uuid.uuid4().hex}"}
    phone = {"countryCode": "IR", "number": msisdn().lstrip("+")}
    cases = [
        ({"amount": "10", "recipientPhone": phone}, "INVALID_AMOUNT_FOR_OPERATOR"),
        ({"amount": "260000", "recipientPhone": phone | {"countryCode": "NG"}}, "INVALID_RECIPIENT_PHONE"),
        ({"amount": "260000", "recipientPhone": phone, "operatorId": 9}, "OPERATOR_UNAVAILABLE_OR_CURRENTLY_INACTIVE"),
    ]
    for body, code in cases:
        answer = requests.post(f"{sandbox.url}/reloadly/topups", json=base | body, headers=headers, timeout=5)
        assert (answer.status_code, answer.json()["errorCode"]) == (400, code)
    detect = f"{sandbox.url}/reloadly/operators/auto-detect/phone/{msisdn().lstrip('+')}/countries/NG"
    assert requests.get(detect, headers=headers, timeout=5).json()["errorCode"] == "COULD_NOT_AUTO_DETECT_OPERATOR"


def test_the_operator_sets_the_balance(sandbox):
    assert requests.post(f"{sandbox.url}/_sandbox/balance", json={"available": -1}, timeout=5).status_code == 400
    assert sandbox.set_balance(123)["available"] == 123
    assert (
        requests.post(
            f"{sandbox.url}/_sandbox/transactions", json={"external_id": "nope", "status": "X"}, timeout=5
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("kind", "kind_of", "url"),
    [
        ("dvs", DVSProvider, "https://preprod-dvs-api.dtone.com/v1"),
        ("reloadly", ReloadlyProvider, "https://topups-sandbox.reloadly.com"),
    ],
)
def test_the_settings_choose_the_adapter(settings, kind, kind_of, url):
    settings.PROVIDER_KIND, settings.PROVIDER_URL = kind, url
    settings.PROVIDER_API_KEY, settings.PROVIDER_API_SECRET = "k", "s"
    get_provider.cache_clear()
    try:
        provider = get_provider()
        assert isinstance(provider, kind_of) and provider.base_url == url
        if kind == "reloadly":
            assert provider.tokens.audience == url  # PROVIDER_AUDIENCE defaults to the API's URL
        settings.PROVIDER_API_SECRET = ""
        get_provider.cache_clear()
        with pytest.raises(ImproperlyConfigured):
            get_provider()
        settings.PROVIDER_KIND = "else"
        get_provider.cache_clear()
        with pytest.raises(ImproperlyConfigured):
            get_provider()
    finally:
        get_provider.cache_clear()


@pytest.mark.parametrize(
    ("kind", "root", "key"),
    [("sandbox", "", None), ("dvs", "/dvs/v1", "sandbox"), ("reloadly", "/reloadly", "sandbox")],
)
def test_make_up_points_the_chosen_adapter_at_the_sandbox_dialect(kind, root, key):
    from devstack.management.commands.runstack import Command

    env = {"PROVIDER_KIND": kind, "PROVIDER_PORT": "8111"}
    sandbox = Command()._provider(env, shown_host="127.0.0.1", port=8000)
    assert sandbox is not None and sandbox["port"] == 8111
    assert (env["PROVIDER_URL"], env.get("PROVIDER_API_KEY")) == (f"http://127.0.0.1:8111{root}", key)
    if kind == "reloadly":
        assert env["PROVIDER_AUTH_URL"] == "http://127.0.0.1:8111/reloadly/oauth/token"
    named = {"PROVIDER_KIND": kind, "PROVIDER_URL": "https://provider.example"}
    assert Command()._provider(named, shown_host="127.0.0.1", port=8000) is None  # a real one: no sandbox
