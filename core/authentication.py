"""Authentication: JWT (`Authorization: Bearer <access>`) and per-seller API keys
(`Authorization: Api-Key <key>`), each a DRF authentication class used by every endpoint, the
charge POST included.

`JWTAuthentication` is simplejwt's, with two changes through its public methods:
`get_validated_token` remembers a verified access token until it expires (a client sends the same
token with every request for its lifetime, and everything verification checks besides expiry is a
property of the token's bytes), and `get_user` loads the user with its Seller profile and its
group names in one query, so the role checks that follow cost no further round trip. It refuses
what simplejwt's own `get_user` refuses: a missing or deactivated user, and a token issued before
the user's password changed (`SIMPLE_JWT["CHECK_REVOKE_TOKEN"]`, simplejwt's claim and digest).
A deactivated user is refused at once, on every request."""

import time
from functools import cache

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt import authentication as simplejwt_authentication
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from core.db.prepared import PreparedStatement
from core.models import Seller, SellerAPIKey
from core.roles import remember_groups


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
def _user_statement(by: str) -> PreparedStatement:
    """The user, its Seller profile and its group names by the user's id (`by="user"`) or its
    seller's (`by="seller"`). Prepared: planning the join and the groups' subquery cost PostgreSQL
    more than running them, on every authenticated request (docs/performance.md)."""
    user_model, quote = get_user_model(), connection.ops.quote_name
    user_columns = ", ".join(f"u.{quote(f.column)}" for f in _concrete_fields(user_model))
    seller_columns = ", ".join(f"s.{quote(f.column)}" for f in _concrete_fields(Seller))
    key = {"user": "u.id", "seller": "s.id"}[by]
    sql = (
        f"SELECT {user_columns}, {seller_columns}, "
        "ARRAY(SELECT g.name FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id) "
        f"FROM {user_model._meta.db_table} u LEFT JOIN {Seller._meta.db_table} s ON s.user_id = u.id WHERE {key} = $1"
    )
    return PreparedStatement(f"auth_user_by_{by}", sql, ["bigint"])


@cache
def _attnames() -> tuple[list[str], list[str]]:
    """The attribute names of the columns `_user_statement` reads: the user's, then the seller's."""
    return (
        [f.attname for f in _concrete_fields(get_user_model())],
        [f.attname for f in _concrete_fields(Seller)],
    )


def _load_user(by: str, key: int):
    """The user, its Seller profile (or none) and its group names, in one round trip.

    Hand-written rather than select_related + ArrayAgg: one statement instead of two, on every
    authenticated request."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once: each access through `connection` looks it up anew
    with db.cursor() as cursor:
        _user_statement(by).execute(cursor, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    user_fields, seller_fields = _attnames()
    user = get_user_model().from_db(db.alias, user_fields, row[: len(user_fields)])
    seller_row = row[len(user_fields) : len(user_fields) + len(seller_fields)]
    seller = None
    if seller_row[0] is not None:
        seller = Seller.from_db(db.alias, seller_fields, seller_row)
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
    def get_user(self, validated_token):
        user_id = _token_user_id(validated_token)
        user = _load_user("user", user_id)
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
        user = _load_user("seller", api_key.seller_id)
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user, api_key

    def authenticate_header(self, request):
        return self.keyword
