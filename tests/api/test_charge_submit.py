"""`POST /api/v1/charges/`: the one path (DRF view -> `charge_submit`'s guarded statement).

Authenticated as every endpoint is (core/authentication.py: the token verified once per process,
the user loaded with its seller and groups in one query, simplejwt's checks), authorized for
sellers only, then one statement that records the charge if the seller's user is still active.
These tests pin that cost and prove that every refusal is the one the contract gives."""

import json
import threading
import time
from datetime import timedelta

import jwt
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from core import authentication
from core.throttling import _client as throttle_redis
from ledger.models import Charge
from tests.api.helpers import api_key_client, assert_error, bearer
from tests.factories import make_seller, make_staff
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/charges/"
RECORD = "ledger_charge_record"
PHONE = "+989121234567"


@pytest.fixture(autouse=True)
def audited():
    """Every test here records charges: each ends with the ledger audit (invariant 7 covers the
    idempotency keys and fingerprints)."""
    yield
    assert_ledger_audit()


def _post(client, body, **headers):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, raw, content_type="application/json", **headers)


def _post_capturing(client, body, **headers):
    with CaptureQueriesContext(connection) as queries:
        response = _post(client, body, **headers)
    return response, [q["sql"] for q in queries.captured_queries]


def test_a_charge_costs_the_user_the_catalog_reads_and_one_write_once_the_token_is_known():
    seller = make_seller()
    client = bearer(seller.user)
    assert (
        _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 202
    )  # token verified, statement prepared

    response, statements = _post_capturing(client, {"phone_number": PHONE, "amount": 1_000, "reference": "r"})
    assert response.status_code == 202
    # The user, its seller and groups; what the number's operator sells at this seller's price (two
    # reads of the catalog); the insert: each a prepared statement.
    assert [sql.split(" (")[0] for sql in statements] == [
        "EXECUTE auth_user_by_user",
        "EXECUTE catalog_number_products",
        "EXECUTE catalog_price_rules",
        f"EXECUTE {RECORD}",
    ], statements
    body = response.json()
    assert response["Location"] == f"/api/v1/charges/{body['id']}/"
    assert body == {
        "id": body["id"],
        "seller": seller.pk,
        "phone_number": PHONE,
        "amount": 1_000,
        "reference": "r",
        "operator": body["operator"],
        "product": body["product"],
        "quote": None,
        "destination_amount": 1_000,  # the house catalog's domestic airtime: face value in the platform currency
        "destination_currency": "USD",
        "delivered_amount": None,
        "delivered_currency": None,
        "status": "queued",
        "stage": "queued",
        "provider_reference": None,
        "failure_code": None,
        "balance_after": None,
        "batch": None,
        "created_at": body["created_at"],
        "settled_at": None,
        "reversal_reason": None,
        "reversed_at": None,
    }
    stored = Charge.objects.get(pk=body["id"])
    assert (stored.seller_id, stored.phone_number, stored.amount, stored.reference) == (seller.pk, PHONE, 1_000, "r")
    assert (stored.operator.name, stored.product_id, stored.cost) == ("House MCI", body["product"], 970)
    assert stored.request_fingerprint and stored.idempotency_key is None


@pytest.mark.parametrize(
    "body",
    [
        {"phone_number": f" {PHONE}", "amount": 1_000},  # trimmed
        {"phone_number": "09121234567", "amount": 1_000},  # national form, normalized
        {"phone_number": "۰۹۱۲۱۲۳۴۵۶۷", "amount": 1_000},  # Persian digits
    ],
)
def test_phone_numbers_are_stored_in_e164(body):
    response = _post(bearer(make_seller().user), body)
    assert response.status_code == 202
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
    assert_error(_post(bearer(seller.user), body), 400, code)
    assert not Charge.objects.filter(seller=seller).exists()


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "Bearer not.a.token", "Api-Key nope"])
def test_malformed_credentials_answer_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert not Charge.objects.exists()


def test_api_keys_record_charges_and_staff_are_refused():
    seller = make_seller()
    assert _post(api_key_client(seller), {"phone_number": PHONE, "amount": 1_000}).status_code == 202
    assert_error(
        _post(bearer(make_staff("auditor")), {"phone_number": PHONE, "amount": 1_000}), 403, "permission_denied"
    )
    assert Charge.objects.filter(seller=seller).count() == 1


def test_a_seller_deactivated_or_made_staff_after_its_token_was_accepted_records_nothing():
    seller = make_seller()
    client = bearer(seller.user)
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}, HTTP_IDEMPOTENCY_KEY="k").status_code == 202

    seller.user.groups.add(Group.objects.get_or_create(name="approver")[0])
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 403, "permission_denied")
    seller.user.groups.clear()
    seller.user.is_active = False
    seller.user.save(update_fields=["is_active"])
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    # Not even its own key's charge is answered to a deactivated user.
    replay = _post(client, {"phone_number": PHONE, "amount": 1_000}, HTTP_IDEMPOTENCY_KEY="k")
    assert_error(replay, 401, "not_authenticated")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_a_token_of_a_deleted_user_answers_401():
    user = make_staff("auditor")
    client = bearer(user)
    user.delete()
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")


def test_a_token_issued_before_a_password_change_records_nothing():
    seller = make_seller()
    client = bearer(seller.user)
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 202

    seller.user.set_password("another-long-password")
    seller.user.save(update_fields=["password"])
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert _post(bearer(seller.user), {"phone_number": PHONE, "amount": 1_000}).status_code == 202
    assert Charge.objects.filter(seller=seller).count() == 2


def test_a_seller_deactivated_between_authentication_and_insert_records_nothing_and_gets_401(monkeypatch):
    """The one thing the statement decides: whether the seller's user is still active."""
    seller = make_seller()
    client = bearer(seller.user)
    real = authentication._load_user

    def load_then_deactivate(by, key):
        user = real(by, key)
        type(user).objects.filter(pk=user.pk).update(is_active=False)  # a concurrent deactivation
        return user

    monkeypatch.setattr(authentication, "_load_user", load_then_deactivate)
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert not Charge.objects.filter(seller=seller).exists()


def test_an_expired_token_is_refused_even_after_it_was_accepted():
    seller = make_seller()
    token = AccessToken.for_user(seller.user)
    token.set_exp(lifetime=timedelta(seconds=3))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 202

    time.sleep(max(0.0, token["exp"] - time.time()) + 0.2)
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_idempotency_keys_keep_their_semantics():
    seller = make_seller()
    client = bearer(seller.user)
    body = {"phone_number": PHONE, "amount": 2_000}

    first = _post(client, body, HTTP_IDEMPOTENCY_KEY="order-1")
    replay = _post(client, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert replay["Location"] == first["Location"]
    assert_error(
        _post(client, {**body, "amount": 3_000}, HTTP_IDEMPOTENCY_KEY="order-1"), 409, "idempotency_key_reused"
    )
    assert_error(_post(client, body, HTTP_IDEMPOTENCY_KEY="\u00e9"), 400, "invalid")
    assert Charge.objects.filter(seller=seller).count() == 1


def test_concurrent_requests_with_one_key_record_one_charge():
    seller = make_seller()
    body = {"phone_number": PHONE, "amount": 2_000}
    answers = []

    def post():
        answers.append(_post(bearer(seller.user), body, HTTP_IDEMPOTENCY_KEY="same"))
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({a.json()["id"] for a in answers}) == 1
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
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 202
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does
    assert _post(client, {"phone_number": PHONE, "amount": 1_000}).status_code == 202
    assert Charge.objects.filter(seller=seller).count() == 2


def test_multipart_bodies_are_refused():
    seller = make_seller()
    response = bearer(seller.user).post(URL, {"phone_number": PHONE, "amount": "1000"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")
    assert not Charge.objects.exists()


def _refresh_token_as_bearer(user) -> str:
    return str(RefreshToken.for_user(user))


def _token_signed_with_another_key(user) -> str:
    token = AccessToken.for_user(user)
    return jwt.encode(token.payload, "another-signing-key-of-enough-length-0123456789", algorithm="HS256")


@pytest.mark.parametrize("make_token", [_refresh_token_as_bearer, _token_signed_with_another_key])
def test_a_token_that_is_not_a_valid_access_token_answers_401(make_token):
    seller = make_seller()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(seller.user)}")
    assert_error(_post(client, {"phone_number": PHONE, "amount": 1_000}), 401, "not_authenticated")
    assert not Charge.objects.filter(seller=seller).exists()
