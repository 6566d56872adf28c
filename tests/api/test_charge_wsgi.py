"""The charge POST's WSGI-level entry (ledger/api/charge_wsgi.py): the answer Django's full request
cycle gives, byte for byte, and every request it does not take handed to Django's handler with its
body intact. The over-HTTP tests serve it under gunicorn (config/wsgi.py)."""

import json
import re

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.tokens import AccessToken

from core.throttling import _client as throttle_redis
from ledger.api import charge_fast_path
from ledger.api.charge_wsgi import with_charge_fast_path
from ledger.models import Charge
from tests.factories import make_seller
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/charges/"
BODY = {"phone_number": "+989121234567", "amount": 1_000}


@pytest.fixture(autouse=True)
def audited():
    yield
    assert_ledger_audit()


class CountingHandler(WSGIHandler):
    """Django's handler, counting the requests the fast path handed to it."""

    calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return super().__call__(environ, start_response)


def _served():
    """(the application gunicorn would serve, the Django handler behind it); built after the
    test's settings, as the middleware read theirs when created."""
    django_app = CountingHandler()
    return with_charge_fast_path(django_app), django_app


def _call(app, body=BODY, *, token=None, **extra):
    """(status code, headers, body bytes, whether the fast insert ran)."""
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    environ = RequestFactory().post(URL, data=raw, content_type="application/json", **extra).environ
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=headers)

    with CaptureQueriesContext(connection) as queries:
        response = app(environ, start_response)
        content = b"".join(response)
        response.close()
    took_fast_insert = any("EXECUTE ledger_charge_fast_insert" in q["sql"] for q in queries.captured_queries)
    return int(started["status"][:3]), started["headers"], content, took_fast_insert


def _without_ids(headers: list, content: bytes) -> tuple[list, dict]:
    body = json.loads(content)
    headers = [
        (name, re.sub(r"\d+", "N", value) if name in ("Location", "Content-Length") else value)
        for name, value in headers
    ]
    return headers, {k: v for k, v in body.items() if k not in ("id", "created_at")}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_same_answer_as_djangos_request_cycle(settings, scheme):
    # The production headers, and HSTS where the load balancer says the request came over TLS.
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_REFERRER_POLICY = "same-origin"
    settings.X_FRAME_OPTIONS = "DENY"
    app, django_app = _served()
    token = AccessToken.for_user(make_seller().user)

    fast = _call(app, token=token, HTTP_X_FORWARDED_PROTO=scheme)
    full = _call(django_app, token=token, HTTP_X_FORWARDED_PROTO=scheme)

    assert django_app.calls == 1  # only the direct call: the fast path answered the first
    assert fast[0] == full[0] == 202 and fast[3] and full[3]
    assert _without_ids(fast[1], fast[2]) == _without_ids(full[1], full[2])
    names = [name for name, _ in fast[1]]
    assert ("Strict-Transport-Security" in names) == (scheme == "https")
    assert {"X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Content-Length"} <= set(names)


def test_what_it_does_not_take_reaches_django_with_its_body():
    app, django_app = _served()
    seller = make_seller()
    token = AccessToken.for_user(seller.user)

    status, _, content, _ = _call(app, {**BODY, "amount": "1000x"}, token=token)
    assert (status, json.loads(content)["code"]) == (400, "invalid")
    # Valid, but with surrounding spaces the serializer trims: read here, then by the full path.
    status, _, content, took_fast_insert = _call(app, {**BODY, "reference": " padded "}, token=token)
    assert status == 202 and not took_fast_insert
    assert json.loads(content)["reference"] == "padded"
    assert django_app.calls == 2
    assert Charge.objects.filter(seller=seller).count() == 1


def test_requests_the_middleware_answer_are_left_to_them(settings):
    settings.SECURE_SSL_REDIRECT = True
    app, django_app = _served()
    seller = make_seller()
    token = AccessToken.for_user(seller.user)
    assert _call(app, token=token)[0] == 301  # plain http: the security middleware redirects

    settings.SECURE_SSL_REDIRECT = False
    app, django_app = _served()
    status, _, content, _ = _call(app, token=token, HTTP_HOST="evil.example")
    assert (status, json.loads(content)["code"]) == (400, "bad_request")
    assert not Charge.objects.filter(seller=seller).exists()


def test_an_error_while_recording_is_answered_not_retried(monkeypatch):
    app, django_app = _served()
    seller = make_seller()

    def fail(**kwargs):
        raise RuntimeError("the connection broke after the commit")

    monkeypatch.setattr(charge_fast_path, "charge_record_if_new", fail)
    status, _, content, _ = _call(app, token=AccessToken.for_user(seller.user))
    assert (status, json.loads(content)["code"]) == (500, "server_error")
    assert django_app.calls == 0  # the full path would have recorded it a second time


def test_a_request_handed_on_is_throttle_counted_once():
    app, _ = _served()
    seller = make_seller()
    token = AccessToken.for_user(seller.user)
    first = _call(app, token=token, HTTP_IDEMPOTENCY_KEY="order-1")
    replay = _call(app, token=token, HTTP_IDEMPOTENCY_KEY="order-1")  # counted, then handed on
    assert (first[0], replay[0]) == (202, 200) and replay[3]
    assert json.loads(first[2])["id"] == json.loads(replay[2])["id"]
    assert int(throttle_redis().get(f"throttle:seller:{seller.pk}")) == 2


def test_it_sends_djangos_request_signals():
    app, _ = _served()
    token = AccessToken.for_user(make_seller().user)
    seen = []

    def started(**kwargs):
        seen.append("started")

    def finished(**kwargs):
        seen.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        assert _call(app, token=token)[0] == 202
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert seen == ["started", "finished"]  # what closes old or broken database connections


def test_it_steps_aside_for_middleware_it_does_not_know(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.api.test_charge_wsgi.CountingHandler"]
    django_app = WSGIHandler.__new__(WSGIHandler)  # not initialised: only its identity matters
    assert with_charge_fast_path(django_app) is django_app
