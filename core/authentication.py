"""Authentication: JWT (`Authorization: Bearer <access>`) and per-seller API keys
(`Authorization: Api-Key <key>`).

Both load the user with its Seller profile and its group names in one query, so the role checks
that follow cost no further round trip (the charge POST is the hot path). A deactivated user is
refused by both on every request: we never trust a token alone for that."""

from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.authentication import JWTAuthentication as _JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from core.models import Seller, SellerAPIKey
from core.roles import remember_groups


def _jwt():
    # Looked up each time: simplejwt replaces its settings object when SIMPLE_JWT changes.
    return simplejwt_settings.api_settings


@cache
def _user_sql(where: str) -> str:
    user_model, quote = get_user_model(), connection.ops.quote_name
    user_columns = ", ".join(f"u.{quote(f.column)}" for f in user_model._meta.concrete_fields)
    seller_columns = ", ".join(f"s.{quote(f.column)}" for f in Seller._meta.concrete_fields)
    return (
        f"SELECT {user_columns}, {seller_columns}, "
        "ARRAY(SELECT g.name FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id) "
        f"FROM {user_model._meta.db_table} u LEFT JOIN {Seller._meta.db_table} s ON s.user_id = u.id WHERE {where}"
    )


def _load_user(where: str, param):
    """The user, its Seller profile (or none) and its group names, in one round trip.

    Hand-written rather than select_related + ArrayAgg: building that queryset cost more CPU per
    request than the rest of the charge POST's database work."""
    with connection.cursor() as cursor:
        cursor.execute(_user_sql(where), [param])
        row = cursor.fetchone()
    if row is None:
        return None
    user_model = get_user_model()
    user_fields = [f.attname for f in user_model._meta.concrete_fields]
    seller_fields = [f.attname for f in Seller._meta.concrete_fields]
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


class JWTAuthentication(_JWTAuthentication):
    def get_user(self, validated_token):
        try:
            user_id = validated_token[_jwt().USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(_("Token contained no recognizable user identification")) from exc
        user = _load_user("u.id = %s", int(user_id)) if str(user_id).isdigit() else None
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
