"""Failed logins: no one can lock anyone else out (the limits that refuse count only the refused
address's own failures), a username under attack from many addresses is slowed, never refused,
and the admin site's login follows the same rule on the same counters. Real Redis counters."""

import time
import uuid

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tests.api.helpers import assert_error
from tests.factories import PASSWORD, make_admin, make_seller


def _address() -> str:
    # A fresh address per client: the counters live in Redis and outlive a test run.
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def _login(username: str, password: str, address: str, **headers):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json", **headers
    )


def _admin_login(username: str, password: str, address: str):
    return Client(REMOTE_ADDR=address).post("/admin/login/?next=/admin/", {"username": username, "password": password})


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="3/15m", LOGIN_THROTTLE_USERNAME_RATE="1000/15m")
def test_failures_from_one_address_refuse_that_address_only():
    username = make_seller().user.username
    attacker = _address()
    for _ in range(3):
        assert_error(_login(username, "wrong", attacker), 401, "not_authenticated")
    refused = _login(username, PASSWORD, attacker)
    assert_error(refused, 429, "throttled")
    assert 0 < int(refused["Retry-After"]) <= 900
    assert _login(username, PASSWORD, _address()).status_code == 200


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_USERNAME_RATE="10/15m", LOGIN_THROTTLE_DELAY=30)
def test_failures_from_many_addresses_never_refuse_the_right_password():
    """The finding: ten wrong passwords from anywhere made the right one answer 429."""
    username = make_seller().user.username
    for _ in range(12):
        assert_error(_login(username, "wrong", _address()), 401, "not_authenticated")
    assert _login(username, PASSWORD, _address()).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("delay", [30, 1])
def test_a_username_under_attack_makes_each_failing_address_wait_longer_and_longer(delay, settings):
    from core.throttling import login_wait

    settings.LOGIN_THROTTLE_USERNAME_RATE, settings.LOGIN_THROTTLE_DELAY = "3/15m", delay
    username = make_seller().user.username
    for _ in range(3):
        _login(username, "wrong", _address())
    guesser = _address()
    assert_error(_login(username, "wrong", guesser), 401, "not_authenticated")
    slowed = _login(username, "wrong", guesser)
    assert_error(slowed, 429, "throttled")
    assert delay - 5 <= int(slowed["Retry-After"]) <= delay
    if delay == 1:  # its next failure, once the wait is over, doubles the wait
        time.sleep(1.5)
        assert_error(_login(username, "wrong", guesser), 401, "not_authenticated")
        assert login_wait(username=username, address=guesser) == 2
    # The right password from an address that has not just failed is not made to wait.
    assert _login(username, PASSWORD, _address()).status_code == 200


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="3/15m")
def test_a_successful_login_clears_its_own_failures():
    username = make_seller().user.username
    address = _address()
    for _ in range(2):
        _login(username, "wrong", address)
    assert _login(username, PASSWORD, address).status_code == 200
    for _ in range(2):
        assert_error(_login(username, "wrong", address), 401, "not_authenticated")
    assert _login(username, PASSWORD, address).status_code == 200


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="1000/15m", LOGIN_THROTTLE_ADDRESS_RATE="4/15m")
def test_one_address_trying_many_usernames_is_refused():
    username = make_seller().user.username
    address = _address()
    for n in range(4):
        assert_error(_login(f"ghost{n}", "x", address), 401, "not_authenticated")
    assert_error(_login(username, PASSWORD, address), 429, "throttled")
    assert _login(username, PASSWORD, _address()).status_code == 200


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="3/15m")
def test_behind_a_proxy_the_forwarded_address_counts_and_a_forged_one_does_not_help(settings):
    """Behind one proxy (nginx) every connection comes from the proxy's address; the client's is
    the last X-Forwarded-For entry, and entries the client sent itself are ignored."""
    from rest_framework.settings import api_settings

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert api_settings.NUM_PROXIES == 1
    username = make_seller().user.username
    proxy, attacker = "127.0.0.1", _address()
    for n in range(3):
        forged = f"203.0.113.{n}, {attacker}"
        assert_error(_login(username, "wrong", proxy, HTTP_X_FORWARDED_FOR=forged), 401, "not_authenticated")
    assert_error(_login(username, PASSWORD, proxy, HTTP_X_FORWARDED_FOR=attacker), 429, "throttled")
    # Another client behind the same proxy is not affected.
    assert _login(username, PASSWORD, proxy, HTTP_X_FORWARDED_FOR=_address()).status_code == 200


def test_the_proxy_count_comes_from_the_environment():
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import django; django.setup(); from rest_framework.settings import api_settings; "
        "print(api_settings.NUM_PROXIES)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "NUM_PROXIES": "2"}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "2"


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="10/15m")
def test_admin_site_login_is_throttled_by_the_same_rule_on_the_same_counters():
    """The finding: with the API login locked, 12 wrong passwords on /admin/login/ answered 200
    and the right one 302."""
    admin = make_admin()
    attacker = _address()
    for _ in range(12):
        assert _admin_login(admin.username, "wrong", attacker).status_code == 200
    refused = _admin_login(admin.username, PASSWORD, attacker)
    assert refused.status_code == 200 and b"Too many failed logins" in refused.content
    assert "_auth_user_id" not in refused.wsgi_request.session
    # The same counters: the API refuses that address too, and both accept the user elsewhere.
    assert_error(_login(admin.username, PASSWORD, attacker), 429, "throttled")
    assert _admin_login(admin.username, PASSWORD, _address()).status_code == 302
    assert _login(admin.username, PASSWORD, _address()).status_code == 200


@pytest.mark.django_db
@override_settings(LOGIN_THROTTLE_RATE="3/15m")
def test_admin_site_failures_with_an_empty_field_do_not_clear_the_count():
    admin = make_admin()
    attacker = _address()
    for _ in range(2):
        _admin_login(admin.username, "wrong", attacker)
    _admin_login(admin.username, "", attacker)
    _admin_login(admin.username, "wrong", attacker)
    assert_error(_login(admin.username, PASSWORD, attacker), 429, "throttled")
