"""Authentication: JWT (`Authorization: Bearer <access>`) and per-seller API keys
(`Authorization: Api-Key <key>`).

Both load the user with its Seller profile and its group names in one query, so the role checks
that follow cost no further round trip (the charge POST is the hot path). A deactivated user is
refused by both on every request: we never trust a token alone for that."""

from django.contrib.auth import get_user_model
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt.authentication import JWTAuthentication as _JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from core.models import SellerAPIKey
from core.roles import remember_groups


def _users_with_roles():
    return (
        get_user_model()
        .objects.select_related("seller")
        .annotate(group_names=ArrayAgg("groups__name", filter=Q(groups__isnull=False), default=[]))
    )


class JWTAuthentication(_JWTAuthentication):
    def get_user(self, validated_token):
        try:
            user_id = validated_token[jwt_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken(_("Token contained no recognizable user identification")) from exc
        user = _users_with_roles().filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise exceptions.AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        remember_groups(user, user.group_names)
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
            SellerAPIKey.objects.filter(prefix=prefix, revoked=False).only("id", "prefix", "hashed_key", "expiry_date",
                                                                           "revoked", "seller_id").first()
            if prefix and len(prefix) <= 8
            else None
        )
        if api_key is None or api_key.has_expired or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed(_("Invalid API key."))
        user = _users_with_roles().filter(seller__id=api_key.seller_id).first()
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(_("User is inactive"), code="user_inactive")
        remember_groups(user, user.group_names)
        return user, api_key

    def authenticate_header(self, request):
        return self.keyword
