"""Authentication: JWT (`Authorization: Bearer <access>`) and per-seller API keys
(`Authorization: Api-Key <key>`).

Access tokens are verified once per process and then remembered until they expire: a client
sends the same token with every request for its lifetime, and everything verification checks
besides expiry (signature, type, claims) is a property of the token's bytes. Every endpoint
gains from that.

`JWTAuthentication` loads the user with its Seller profile and its group names in one query, so
the role checks that follow cost no further round trip, and refuses a deactivated user or a token
issued before the user's password changed (`SIMPLE_JWT["CHECK_REVOKE_TOKEN"]`) on every request.

`JWTAuthentication(load_user=False)` is for the one view whose service checks the user itself,
inside the statement it runs anyway (the charge POST: `ledger.services.charges.charge_submit`):
it answers the token's user without loading it (simplejwt's stateless user). When that service
refuses, `explain_refusal` loads the user as `JWTAuthentication` does, so the client gets the
same 401 or 403 as from any other endpoint."""

import time
from dataclasses import dataclass
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt import authentication as simplejwt_authentication
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.utils import get_md5_hash_password

from core.models import Seller, SellerAPIKey
from core.roles import Role, remember_groups, role_of


def _jwt():
    # Looked up each time: simplejwt replaces its settings object when SIMPLE_JWT changes.
    return simplejwt_settings.api_settings


class _VerifiedTokens:
    """Validated access tokens by their bytes, each until its `exp`. Past it a token is verified
    anew, so the full check (with its leeway) decides. Bounded: emptied when full."""

    max_size = 10_000

    def __init__(self):
        self._tokens: dict[bytes, tuple[object, float]] = {}

    def get(self, raw: bytes):
        hit = self._tokens.get(raw)
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        return None

    def put(self, raw: bytes, token) -> None:
        expires = token.get("exp")
        if not isinstance(expires, int | float):
            return
        if len(self._tokens) >= self.max_size:
            self._tokens.clear()
        self._tokens[raw] = (token, expires)

    def clear(self) -> None:
        self._tokens.clear()


verified_tokens = _VerifiedTokens()


class _CachedVerification:
    def get_validated_token(self, raw_token: bytes):
        token = verified_tokens.get(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            verified_tokens.put(raw_token, token)
        return token


def _concrete_fields(model) -> list:
    """The model's columns in declaration order, through the documented `_meta.get_fields()`."""
    return [f for f in model._meta.get_fields() if f.concrete and not f.many_to_many]


@cache
def _user_sql(where: str) -> str:
    user_model, quote = get_user_model(), connection.ops.quote_name
    user_columns = ", ".join(f"u.{quote(f.column)}" for f in _concrete_fields(user_model))
    seller_columns = ", ".join(f"s.{quote(f.column)}" for f in _concrete_fields(Seller))
    return (
        f"SELECT {user_columns}, {seller_columns}, "
        "ARRAY(SELECT g.name FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id) "
        f"FROM {user_model._meta.db_table} u LEFT JOIN {Seller._meta.db_table} s ON s.user_id = u.id WHERE {where}"
    )


def _load_user(where: str, param):
    """The user, its Seller profile (or none) and its group names, in one round trip.

    Hand-written rather than select_related + ArrayAgg: one statement instead of two, on every
    authenticated request."""
    with connection.cursor() as cursor:
        cursor.execute(_user_sql(where), [param])
        row = cursor.fetchone()
    if row is None:
        return None
    user_model = get_user_model()
    user_fields = [f.attname for f in _concrete_fields(user_model)]
    seller_fields = [f.attname for f in _concrete_fields(Seller)]
    user = user_model.from_db(connection.alias, user_fields, row[: len(user_fields)])
    seller_row = row[len(user_fields) : len(user_fields) + len(seller_fields)]
    seller = None
    if seller_row[0] is not None:
        seller = Seller.from_db(connection.alias, seller_fields, seller_row)
        Seller.user.field.set_cached_value(seller, user)
    # Cached even when None, so `hasattr(user, "seller")` asks no further query.
    Seller.user.field.remote_field.set_cached_value(user, seller)
    remember_groups(user, row[-1])
    return user


def _token_user_id(validated_token) -> int:
    try:
        user_id = validated_token[_jwt().USER_ID_CLAIM]
    except KeyError as exc:
        raise InvalidToken(_("Token contained no recognizable user identification")) from exc
    if not str(user_id).isdigit() or len(str(user_id)) > 18:
        raise exceptions.AuthenticationFailed(_("User not found"), code="user_not_found")
    return int(user_id)


class JWTAuthentication(_CachedVerification, simplejwt_authentication.JWTAuthentication):
    """`load_user=False`: the token's user without a query (simplejwt's stateless user), only
    for a view whose service checks the user itself (see the module's docstring)."""

    def __init__(self, *, load_user: bool = True):
        super().__init__()
        self.load_user = load_user

    def get_user(self, validated_token):
        user_id = _token_user_id(validated_token)
        if not self.load_user:
            return _jwt().TOKEN_USER_CLASS(validated_token)
        user = _load_user("u.id = %s", user_id)
        if user is None:
            raise exceptions.AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if _jwt().CHECK_REVOKE_TOKEN and validated_token.get(_jwt().REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
            user.password
        ):
            raise exceptions.AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>`: authenticates as the key's seller."""

    keyword = "Api-Key"
    key_parser = KeyParser()

    def authenticate(self, request):
        key = self.key_parser.get(request)
        if key is None:
            return None
        prefix, _dot, _secret = key.partition(".")
        api_key = (
            SellerAPIKey.objects.filter(prefix=prefix, revoked=False)
            .only("id", "prefix", "hashed_key", "expiry_date", "revoked", "seller_id")
            .first()
            if prefix and len(prefix) <= 8
            else None
        )
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed(_("Invalid API key."))
        user = _load_user("s.id = %s", api_key.seller_id)
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user, api_key

    def authenticate_header(self, request):
        return self.keyword


# --- Acting as a seller without loading the user ---------------------------------------------


@dataclass(frozen=True)
class ActingSeller:
    """Who a request acts as, for a service that checks it in its own statement: the seller, the
    user that must still be that seller's active, non-staff user, and, for a token issued with
    revocation on, the password hash it was issued against."""

    seller_id: int
    user_id: int
    password_hash: str | None


# A seller's user never changes (one-to-one, never reassigned), so the mapping is safe to keep;
# whether the user may still act as that seller is checked by the service, every time.
_seller_of_user: dict[int, int] = {}


def _seller_id_of_user(user_id: int) -> int | None:
    seller_id = _seller_of_user.get(user_id)
    if seller_id is None:
        seller_id = Seller.objects.filter(user_id=user_id).values_list("id", flat=True).first()
        if seller_id is None:
            return None
        if len(_seller_of_user) >= 100_000:
            _seller_of_user.clear()
        _seller_of_user[user_id] = seller_id
    return seller_id


def acting_seller_id(user) -> int | None:
    """The seller a request's user acts as: for a token-only user, its seller if it has one (its
    role is the service's to check); for a loaded user, its seller if its role is seller."""
    if isinstance(user, TokenUser):
        return _seller_id_of_user(int(user.id))
    if role_of(user) != Role.SELLER:
        return None
    return user.seller.pk


def acting_seller(request) -> ActingSeller:
    """`ActingSeller` of a request authenticated by `JWTAuthentication(load_user=False)` or
    `ApiKeyAuthentication`; PermissionDenied when the user has no seller to act as."""
    seller_id = acting_seller_id(request.user)
    if seller_id is None:
        explain_refusal(request)  # a token of a user that is gone is 401, as everywhere
        raise exceptions.PermissionDenied()
    password_hash = None
    if isinstance(request.user, TokenUser) and _jwt().CHECK_REVOKE_TOKEN:
        password_hash = request.auth.get(_jwt().REVOKE_TOKEN_CLAIM) or ""
    return ActingSeller(seller_id=seller_id, user_id=int(request.user.pk), password_hash=password_hash)


def explain_refusal(request) -> None:
    """The service refused to act for this request's user: raise what authenticating and
    authorizing it in full would have (401 for a missing or inactive user or a revoked token, 403
    for a user who is not a seller). Returns when the user passes both (a race the caller
    reports)."""
    user = request.user
    if isinstance(user, TokenUser):
        user = JWTAuthentication().get_user(request.auth)
    if role_of(user) != Role.SELLER:
        raise exceptions.PermissionDenied()
