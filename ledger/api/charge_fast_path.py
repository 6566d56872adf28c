"""The charge POST's fast path: the common request in a fraction of the full path's CPU.

`POST /api/v1/charges/` is the API's hot path (issue 3 asks for 800 accepted charges/s on 2
cores), and DRF's dispatch, serializer and the ORM cost about 1.7 ms of CPU per request in-process
(`docs/performance.md` §3). This path handles only the request a well-behaved integrator sends:
a valid access token of an active seller, a JSON body that is valid as it stands, and a key, if
any, not used before. It records the charge with one autocommitted statement
(`ledger.services.charges.charge_record_if_new`) and answers exactly what the full path answers.

Anything else falls through, untouched, to the DRF view: bad or missing credentials, API keys,
staff users, invalid or unusual input, a throttled seller, a replayed or reused key. So every
error body still comes from one place, and the fast path never decides a refusal itself. A
request it has counted against the seller's rate is not counted again by the full path.

Two entries call it: the view of `/charges/` (below), inside Django's handler and middleware like
any view, and, in front of Django's handler, `ledger/api/charge_wsgi.py`, which gunicorn serves
and which does the same work as that handler and middleware for this one request at a third of
their CPU. `LEDGER_CHARGE_FAST_PATH=0` turns both off."""

import functools
import json
import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from core.authentication import JWTAuthentication
from core.models import Seller
from core.throttling import seller_request_allowed
from ledger.api.serializers import ChargeCreateInput, charge_output, is_valid_idempotency_key
from ledger.fields import normalize_phone
from ledger.services.charges import charge_record_if_new

# The longest body the fast path reads: a valid charge is a few hundred bytes; anything larger
# (up to the limits that answer 413) is the full path's to judge.
MAX_BODY = 2048
REFERENCE_MAX_LENGTH = ChargeCreateInput._declared_fields["reference"].max_length


def with_fast_post(drf_view):
    """Wrap the DRF view of `/charges/`: POSTs try the fast path first. The wrapper keeps the DRF
    view's attributes (`cls`, `csrf_exempt`), so the schema and CSRF handling see the same view."""

    allow = _allow_header(drf_view)

    @functools.wraps(drf_view)
    def view(request, *args, **kwargs):
        if request.method == "POST" and settings.LEDGER_CHARGE_FAST_PATH:
            response = accept_charge(request, allow=allow)
            if response is not None:
                return response
        return drf_view(request, *args, **kwargs)

    view.fast_post_allow = allow  # read by the WSGI-level entry (ledger/api/charge_wsgi.py)
    return view


def _allow_header(drf_view) -> str:
    """The Allow header DRF sends from this view (Django's setup adds HEAD where there is GET)."""
    instance = drf_view.view_class(**drf_view.view_initkwargs)
    instance.setup(HttpRequest())
    return ", ".join(instance.allowed_methods)


def accept_charge(request, *, allow: str) -> HttpResponse | None:
    """The 202 of a recorded charge, or None when the full path must answer."""
    if connection.in_atomic_block:
        return None  # ATOMIC_REQUESTS, or a test's transaction: the insert must commit by itself
    user_id = _token_user_id(request)
    if user_id is None:
        return None
    data = _valid_input(request)
    if data is None:
        return None
    seller_id = _seller_id_of(user_id)
    if seller_id is None or not seller_request_allowed(request, seller_id):
        return None
    charge = charge_record_if_new(user_id=user_id, seller_id=seller_id, **data)
    if charge is None:
        _seller_of_user.pop(user_id, None)  # in case the mapping itself is what no longer holds
        return None
    return _accepted(charge, allow)


# --- authentication: a valid access token, as JWTAuthentication validates it --------------------

_jwt = JWTAuthentication()


def _token_user_id(request) -> int | None:
    if jwt_settings.CHECK_REVOKE_TOKEN:
        return None  # needs the user's password hash: the full path checks it
    header = _jwt.get_header(request)
    raw = _jwt.get_raw_token(header) if header else None
    if raw is None:
        return None
    verified = _verified_tokens.get(raw)
    if verified is not None and time.time() < verified[1]:
        return verified[0]
    try:
        token = _jwt.get_validated_token(raw)
    except Exception:  # InvalidToken and any other refusal: the full path words it
        return None
    user_id, expires = str(token.get(jwt_settings.USER_ID_CLAIM, "")), token.get("exp")
    if not user_id.isdigit():
        return None
    if isinstance(expires, int | float):
        if len(_verified_tokens) >= MAX_VERIFIED_TOKENS:
            _verified_tokens.clear()
        _verified_tokens[raw] = (int(user_id), expires)
    return int(user_id)


# Access tokens already verified here, until they expire: a client sends the same token with
# every request for its lifetime, and verifying it (HMAC, base64, JSON, claims) cost a tenth of
# the fast path's CPU. Everything checked besides expiry is a property of the token's bytes
# (signature, type, claims) and cannot change; past its `exp` a token is verified anew, so the
# full check (with its leeway) decides.
MAX_VERIFIED_TOKENS = 10_000
_verified_tokens: dict[bytes, tuple[int, float]] = {}


# A seller's user never changes (one-to-one, never reassigned), so the mapping is safe to keep;
# whether the user may still act as that seller is checked by the insert itself, every time.
_seller_of_user: dict[int, int] = {}


def _seller_id_of(user_id: int) -> int | None:
    seller_id = _seller_of_user.get(user_id)
    if seller_id is None:
        seller_id = Seller.objects.filter(user_id=user_id).values_list("id", flat=True).first()
        if seller_id is None:
            return None
        if len(_seller_of_user) >= 100_000:
            _seller_of_user.clear()
        _seller_of_user[user_id] = seller_id
    return seller_id


# --- input: only what ChargeCreateInput accepts unchanged ----------------------------------------


def _reject_constant(_name):
    raise ValueError  # NaN and Infinity, as DRF's JSON parser refuses them


def _valid_input(request) -> dict | None:
    """The charge's fields if the body is one the serializer would accept as it stands (the same
    rules, without the trimming or coercing cases), else None."""
    if request.content_type != "application/json":
        return None
    if request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    try:
        data = json.loads(request.body.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    amount, phone, reference = data.get("amount"), data.get("phone_number"), data.get("reference", "")
    if type(amount) is not int or not 0 < amount <= settings.LEDGER_MAX_AMOUNT:
        return None
    if not (_plain_text(phone) and _plain_text(reference)) or len(reference) > REFERENCE_MAX_LENGTH:
        return None
    phone_number = _normalized_phone(phone, settings.PHONE_DEFAULT_REGION)
    if phone_number is None:
        return None
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")  # (request.headers would parse every header)
    if key is not None and not is_valid_idempotency_key(key):
        return None
    return {"phone_number": phone_number, "amount": amount, "reference": reference, "idempotency_key": key}


def _plain_text(value) -> bool:
    """A string DRF's CharField keeps as it is: no surrounding whitespace to trim, no NUL, no
    lone surrogate."""
    if type(value) is not str or value != value.strip() or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _normalized_phone(raw: str, region: str) -> str | None:
    # A pure function of the text and the default region (`normalize_phone` reads the setting;
    # it is in the cache key so a changed setting is never answered from the cache), and the
    # same numbers come back again and again: parsing one costs as much as the rest of the checks.
    return normalize_phone(raw) if raw else None


# --- the answer: byte for byte what the DRF view renders ----------------------------------------


def _accepted(charge, allow: str) -> HttpResponse:
    # JSONRenderer with the project's settings: compact, UTF-8, line separators escaped.
    body = json.dumps(charge_output(charge), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    body = body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    response = HttpResponse(body.encode("utf-8"), status=202, content_type="application/json")
    response["Location"] = f"/api/v1/charges/{charge.pk}/"
    response["Allow"] = allow
    return response
