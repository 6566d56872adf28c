"""Nothing a client sends may answer 5xx (the contract). The inputs issue 12 found answering 500,
each pinned down, then a property-based run (hypothesis) that throws arbitrary methods, headers,
bodies and query strings at every URL pattern of the API, in-process through Django's test
client, and asserts no 5xx and no exception.

tests/api/test_schema_fuzz.py is the other half: it generates requests *from the schema* (valid
and near-valid ones, with valid credentials) and checks the answers against it over real HTTP;
this one ignores the schema and sends what nobody would."""

import base64
import json
import os
import re
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import encode_multipart
from django.urls import URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import RefreshToken

from core.roles import Role
from core.services import api_key_issue, staff_create
from ledger.services.charges import charge_submit
from ledger.services.deposits import deposit_request
from tests.factories import PASSWORD, make_admin, make_seller
from tests.support import assert_ledger_audit

# Deeper than the interpreter's recursion limit (1,000): `json.load` gives up with RecursionError.
NESTED = b"[" * 1200
MAX_EXAMPLES = int(os.environ.get("NO_5XX_EXAMPLES", "600"))


def _bearer(user) -> str:
    return f"Bearer {RefreshToken.for_user(user).access_token}"


@pytest.fixture
def world(db):
    """Two sellers with a deposit and a charge each, an admin, a staff member, their credentials."""
    admin, seller, other = make_admin(), make_seller(), make_seller()
    staff = staff_create(username="fuzz-auditor", password=PASSWORD, role=Role.AUDITOR)
    objects = {"admin": admin.pk, "staff": staff.pk, "seller": seller.pk, "other": other.pk}
    for name, owner in (("", seller), ("other_", other)):
        objects[f"{name}deposit"] = deposit_request(seller=owner, amount=1_000)[0].pk
        objects[f"{name}charge"] = charge_submit(seller=owner, phone_number="+989121234567", amount=100)[0].pk
    api_key, key = api_key_issue(seller=seller, name="fuzz")
    objects["api_key"] = api_key.pk
    credentials = {
        "admin": _bearer(admin),
        "seller": _bearer(seller.user),
        "other": _bearer(other.user),
        "refresh_as_access": f"Bearer {RefreshToken.for_user(seller.user)}",
        "api_key": f"Api-Key {key}",
    }
    return {"ids": objects, "credentials": credentials, "refresh": str(RefreshToken.for_user(seller.user))}


def _api_routes() -> list[str]:
    """Every URL pattern under /api/v1/, as route strings (`api/v1/deposits/<id:pk>/approve/`)."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    return sorted({route for route in walk(get_resolver().url_patterns, "") if route.startswith("api/v1/")})


_PLACEHOLDER = re.compile(r"<(?:\w+:)?\w+>")


def _concrete(route: str, ids) -> str:
    return "/" + _PLACEHOLDER.sub(lambda _: str(next(ids)), route)


# --- what issue 12 found ------------------------------------------------------------------------


def _json_operations() -> list[tuple[str, str]]:
    """Every operation the served schema says takes a JSON body."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


def test_the_schema_lists_the_json_endpoints_checked_below():
    operations = set(_json_operations())
    assert {("/api/v1/auth/token/", "post"), ("/api/v1/auth/token/refresh/", "post")} <= operations
    assert {("/api/v1/charges/", "post"), ("/api/v1/staff/{id}/", "patch")} <= operations
    assert len(operations) >= 9


def test_deeply_nested_json_is_a_parse_error_on_every_json_endpoint(world):
    ids, credentials = world["ids"], world["credentials"]
    path_ids = {"/api/v1/staff/{id}/": ids["staff"], "/api/v1/deposits/{id}/reject/": ids["deposit"]}
    for path, method in _json_operations():
        concrete = path.replace("{id}", str(path_ids.get(path, ids["seller"])))
        answers = {}
        for who in (None, "seller", "admin"):  # anonymous first: login and refresh need no credentials
            headers = {"Authorization": credentials[who]} if who else {}
            response = Client().generic(
                method.upper(), concrete, NESTED, content_type="application/json", headers=headers
            )
            answers[who] = (response.status_code, response.json().get("code"))
        assert all(status < 500 for status, _ in answers.values()), (method, path, answers)
        assert (400, "parse_error") in answers.values(), (method, path, answers)


@pytest.mark.parametrize("cursor", ["p=abc", "r=1&p=x", "p=1e5", "p=-1", "p=99999999999999999999", "p=\u0661"])
def test_crafted_cursor_positions_are_invalid_cursors(world, cursor):
    encoded = base64.b64encode(cursor.encode()).decode()
    response = Client().get(
        "/api/v1/transactions/", {"cursor": encoded}, headers={"Authorization": world["credentials"]["seller"]}
    )
    assert response.status_code == 404 and response.json()["code"] == "not_found", response.content


def test_a_cursor_whose_position_is_an_id_still_pages(world):
    client = Client(headers={"Authorization": world["credentials"]["seller"]})
    for cursor in ("p=999999", "r=1&p=1", "o=1&p=5"):
        response = client.get("/api/v1/transactions/", {"page_size": 1, "cursor": _cursor(cursor)})
        assert response.status_code == 200, (cursor, response.content)


def _cursor(querystring: str) -> str:
    return base64.b64encode(querystring.encode()).decode()


# --- the property: no input answers 5xx ---------------------------------------------------------

_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
_FIELDS = ["username", "password", "refresh", "name", "role", "is_active", "amount", "phone_number", "reference",
           "reason", "file", "access"]
_QUERY_KEYS = ["page", "page_size", "cursor", "seller", "status", "kind", "created_after", "created_before",
               "seq_after", "ordering", "phone_number", "batch", "format", "search"]
_HUGE_NUMBERS = ["1" * 5000, "1" * 4000, "-" + "9" * 30, "1e400", "-0", str(2**63), str(2**64), "1.0", "1e5"]
_CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; charset=bogus",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "text/plain",
    "text/csv",
    "",
]
_BOUNDARY = "fuzzboundary"

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _nested(depth: int, kind: str) -> bytes:
    opening, closing = {"list": ("[", "]"), "object": ('{"a":', "}"), "open": ("[", "")}[kind]
    return (opening * depth + "1" + closing * depth).encode()


_json_bodies = st.one_of(
    _json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.builds(lambda k, n: f'{{"{k}": {n}}}'.encode(), st.sampled_from(_FIELDS), st.sampled_from(_HUGE_NUMBERS)),
    st.builds(_nested, st.integers(500, 3000), st.sampled_from(["list", "object", "open"])),
)
_payloads = st.one_of(
    st.tuples(st.sampled_from(_CONTENT_TYPES) | _HEADER_TEXT, st.binary(max_size=200) | _json_bodies),
    st.tuples(st.just("application/json"), _json_bodies),
    st.builds(
        lambda name, content, extra: (
            f"multipart/form-data; boundary={_BOUNDARY}",
            encode_multipart(_BOUNDARY, {"file": SimpleUploadedFile(name, content), **extra}),
        ),
        st.text(max_size=20).filter(lambda n: "\x00" not in n) | st.just("charges.csv"),
        st.binary(max_size=200) | st.just(b"phone_number,amount\n09121234567,100\n"),
        st.dictionaries(st.sampled_from(_FIELDS), st.text(max_size=10), max_size=2),
    ),
)
_crafted_cursors = st.builds(
    lambda parts: _cursor(urlencode(parts)),
    st.dictionaries(st.sampled_from(["o", "r", "p"]), st.sampled_from(["abc", "x", "1e5", "-1", "0", "1", "", "9" * 25])
                    | st.text(max_size=6), max_size=3),
)
_queries = st.one_of(
    st.just(""),
    st.dictionaries(st.sampled_from(_QUERY_KEYS), _HEADER_TEXT | st.sampled_from(_HUGE_NUMBERS), max_size=4).map(
        urlencode
    ),
    _crafted_cursors.map(lambda cursor: f"cursor={cursor}"),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),  # raw, unencoded
)


def _requests(world):
    credentials = world["credentials"]
    authorization = st.one_of(
        st.sampled_from(
            ["Bearer", "Bearer ", "Bearer a b", "Bearer a", "Api-Key", "Api-Key ", "Api-Key a b", "Api-Key a.b",
             "Basic Zm9vOmJhcg==", "Token abc", "bearer", f"Bearer {world['refresh']} x"]
        ),
        st.sampled_from(sorted(credentials.values())),
        st.sampled_from(sorted(credentials.values())).map(lambda value: f"{value} {value.split()[-1]}"),  # two tokens
        st.builds(lambda scheme, text: scheme + text, st.sampled_from(["Bearer ", "Api-Key ", ""]), _HEADER_TEXT),
    )
    headers = st.fixed_dictionaries(
        {},
        optional={
            "Authorization": authorization,
            "Idempotency-Key": _HEADER_TEXT,
            "Accept": st.sampled_from(["application/json", "text/csv", "text/html", "*/*", "application/xml"])
            | _HEADER_TEXT,
            "X-Forwarded-For": _HEADER_TEXT,
            "Cookie": _HEADER_TEXT,
            "Host": st.sampled_from(["testserver", "evil.example", "localhost:99999"]) | _HEADER_TEXT,
        },
    )
    ids = st.sampled_from([*world["ids"].values(), 1, 999_999_999_999_999_999])
    paths = st.builds(
        lambda route, chosen: _concrete(route, iter(chosen)),
        st.sampled_from(_api_routes()),
        st.lists(ids, min_size=2, max_size=2),
    )
    methods = st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"])
    return st.tuples(methods, paths, _queries, headers, _payloads)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around the views
def test_no_request_answers_a_server_error(world):
    statuses: list[int] = []

    @given(request=_requests(world))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same requests on every run: CI stays stable; raise NO_5XX_EXAMPLES to dig
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(request):
        method, path, query, headers, (content_type, body) = request
        # The test client raises whatever the view raised, so a failure shows its traceback.
        response = Client().generic(
            method, path, body, content_type=content_type, headers=headers, QUERY_STRING=query
        )
        if response.streaming:
            b"".join(response.streaming_content)  # a CSV export fails, if at all, while it streams
        statuses.append(response.status_code)
        assert response.status_code < 500, (method, path, query, headers, body[:200], response.content[:500])

    no_server_error()
    # Not vacuous: the requests reached views and their validation, not only the authentication.
    print("statuses: " + ", ".join(f"{code}x{statuses.count(code)}" for code in sorted(set(statuses))))
    assert {200, 400, 401, 403, 404, 405, 415} <= set(statuses), sorted(set(statuses))
    assert {201, 202} & set(statuses)
    assert_ledger_audit()
