"""The charge POST's fast path (ledger/api/charge_fast_path.py): it answers exactly what the full
DRF path answers, takes the common request only, and hands everything else to the full path.

Transactional tests: the fast path's insert autocommits, so inside a test's wrapping transaction
it steps aside (and the rest of the API suite exercises the full path). The over-HTTP tests run
the fast path under gunicorn and real concurrency."""

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from core.throttling import _client as throttle_redis
from ledger.models import Charge
from tests.api.helpers import api_key_client, assert_error, bearer
from tests.factories import make_seller, make_staff
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/charges/"
FAST_INSERT = "ledger_charge_fast_insert"
PHONE = "+989121234567"


@pytest.fixture(autouse=True)
def audited():
    """Every test here records charges: each ends with the ledger audit (invariant 7 covers the
    idempotency keys and fingerprints the fast path writes)."""
    yield
    assert_ledger_audit()


def _post(client, body, **headers):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, raw, content_type="application/json", **headers)


def _post_counting(client, body, **headers):
    """(response, whether the fast path's statement recorded it)."""
    with CaptureQueriesContext(connection) as queries:
        response = _post(client, body, **headers)
    return response, any(f"EXECUTE {FAST_INSERT}" in q["sql"] for q in queries.captured_queries)


def test_same_answer_as_the_full_path(settings):
    seller = make_seller()
    client = bearer(seller.user)
    body = {"phone_number": PHONE, "amount": 5_000, "reference": "order 7 \u2028 ünïcode"}

    fast, took_fast_path = _post_counting(client, body)
    settings.LEDGER_CHARGE_FAST_PATH = False
    full, took_it_again = _post_counting(client, body)

    assert took_fast_path and not took_it_again
    assert fast.status_code == full.status_code == 202
    fast_headers, full_headers = dict(fast.headers), dict(full.headers)
    assert fast_headers.pop("Location") == f"/api/v1/charges/{fast.json()['id']}/"
    assert full_headers.pop("Location") == f"/api/v1/charges/{full.json()['id']}/"
    fast_headers.pop("Content-Length"), full_headers.pop("Content-Length")
    assert fast_headers == full_headers
    fast_body, full_body = dict(fast.json()), dict(full.json())
    for varying in ("id", "created_at"):
        fast_body.pop(varying), full_body.pop(varying)
    assert fast_body == full_body
    assert b"\\u2028" in fast.content  # escaped as DRF's renderer escapes it
    # The rows as stored, column by column. Not the status and what settling sets: shard workers
    # running in the same suite may have settled one already.
    settled_by_workers = {"id", "created_at", "status", "failure_code", "balance_after", "settled_at"}
    columns = [f.attname for f in Charge._meta.concrete_fields if f.attname not in settled_by_workers]
    stored = Charge.objects.values(*columns, "created_at").get(pk=fast.json()["id"])
    twin = Charge.objects.values(*columns, "created_at").get(pk=full.json()["id"])
    assert stored.pop("created_at") <= twin.pop("created_at")
    assert stored == twin


@pytest.mark.parametrize(
    "body",
    [
        {"phone_number": f" {PHONE}", "amount": 1_000},  # trimmed by the serializer
        {"phone_number": "09121234567", "amount": 1_000},  # national form, normalized
        {"phone_number": PHONE, "amount": 1_000, "reference": " padded "},
    ],
)
def test_valid_but_unusual_input_is_left_to_the_full_path(body):
    seller = make_seller()
    response, took_fast_path = _post_counting(bearer(seller.user), body)
    assert response.status_code == 202
    # National numbers are normalized by both; the padded ones only by the full path.
    assert took_fast_path == (body["phone_number"] == "09121234567")
    assert response.json()["phone_number"] == PHONE


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"phone_number": PHONE, "amount": 1_000.0}, "invalid"),
        ({"phone_number": PHONE, "amount": True}, "invalid"),
        ({"phone_number": PHONE, "amount": 0}, "invalid"),
        ({"phone_number": "+1", "amount": 1_000}, "invalid"),
        ({"phone_number": PHONE, "amount": 1_000, "reference": "x" * 256}, "invalid"),
        ({"phone_number": PHONE, "amount": 1_000, "reference": "nul\x00"}, "invalid"),
        ('{"phone_number": "+989121234567", "amount": NaN}', "parse_error"),
        ("[1, 2]", "invalid"),
    ],
)
def test_bad_input_gets_the_contracts_error_and_records_nothing(body, code):
    seller = make_seller()
    response = _post(bearer(seller.user), body)
    assert_error(response, 400, code)
    assert not Charge.objects.filter(seller=seller).exists()


def test_credentials_it_does_not_handle_are_answered_by_the_full_path():
    seller = make_seller()
    response, took_fast_path = _post_counting(api_key_client(seller), {"phone_number": PHONE, "amount": 1_000})
    assert response.status_code == 202 and not took_fast_path

    assert_error(
        _post(bearer(make_staff("auditor")), {"phone_number": PHONE, "amount": 1_000}), 403, "permission_denied"
    )
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    assert_error(_post(forged, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_a_seller_deactivated_or_made_staff_after_its_token_was_issued_records_nothing():
    seller = make_seller()
    client = bearer(seller.user)
    response, took_fast_path = _post_counting(client, {"phone_number": PHONE, "amount": 1_000})
    assert response.status_code == 202 and took_fast_path  # the token and the seller are now cached

    seller.user.groups.add(Group.objects.get_or_create(name="approver")[0])
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 403, "permission_denied")
    seller.user.groups.clear()
    seller.user.is_active = False
    seller.user.save(update_fields=["is_active"])
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 401
    assert Charge.objects.filter(seller=seller).count() == 1


def test_an_expired_token_is_refused_even_after_it_was_accepted():
    seller = make_seller()
    token = AccessToken.for_user(seller.user)
    token.set_exp(lifetime=timedelta(seconds=1))
    client = bearer(seller.user)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert _post_counting(client, {"phone_number": PHONE, "amount": 1_000})[1]

    time.sleep(1.5)
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_idempotency_keys_keep_their_semantics():
    seller = make_seller()
    client = bearer(seller.user)
    body = {"phone_number": PHONE, "amount": 2_000}

    first, took_fast_path = _post_counting(client, body, HTTP_IDEMPOTENCY_KEY="order-1")
    replay, replay_fast = _post_counting(client, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert (first.status_code, replay.status_code) == (202, 200)
    assert took_fast_path and replay_fast  # tried, recorded nothing, and the full path answered
    assert replay.json()["id"] == first.json()["id"]
    assert_error(
        _post(client, {**body, "amount": 3_000}, HTTP_IDEMPOTENCY_KEY="order-1"), 409, "idempotency_key_reused"
    )
    assert_error(_post(client, body, HTTP_IDEMPOTENCY_KEY="\u00e9"), 400, "invalid")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_a_throttled_request_is_refused_and_counted_once(settings):
    settings.SELLER_THROTTLE_RATE = "3/m"
    seller = make_seller()
    client = bearer(seller.user)
    statuses = [_post(client, {"phone_number": PHONE, "amount": 1_000}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    assert int(throttle_redis().get(f"throttle:seller:{seller.pk}")) == 4
    assert Charge.objects.filter(seller=seller).count() == 3


def test_a_session_that_lost_its_prepared_statement_prepares_it_again():
    seller = make_seller()
    client = bearer(seller.user)
    assert _post_counting(client, {"phone_number": PHONE, "amount": 1_000})[1]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does
    response, took_fast_path = _post_counting(client, {"phone_number": PHONE, "amount": 1_000})
    assert response.status_code == 202 and took_fast_path
    assert Charge.objects.filter(seller=seller).count() == 2


def test_off_switch(settings):
    settings.LEDGER_CHARGE_FAST_PATH = False
    seller = make_seller()
    response, took_fast_path = _post_counting(bearer(seller.user), {"phone_number": PHONE, "amount": 1_000})
    assert response.status_code == 202 and not took_fast_path
