"""Login and refresh: simplejwt's views, plus throttling of failed logins (the rule is in
core/throttling.py, shared with the admin site's login),
and a refresh that answers 401 (not 500) for a user deleted since, and refuses a refresh token
issued before the user's last password change (simplejwt checks that only for access tokens)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from core.throttling import client_address, login_failed, login_succeeded, login_wait


class LoginApi(TokenObtainPairView):
    def post(self, request, *args, **kwargs):
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username") if isinstance(data.get("username"), str) else ""
        address = client_address(request)
        wait = login_wait(username=username, address=address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many failed logins; try again later.")
        try:
            response = super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            login_failed(username=username, address=address)
            raise
        login_succeeded(username=username, address=address)
        return response


@extend_schema_serializer(component_name="TokenRefresh")  # simplejwt's name, which clients already use
class RefreshInput(TokenRefreshSerializer):
    # Write-only, as simplejwt's schema extension declares it for its own serializer: the answer
    # holds the new access token only (no rotation), and generated clients must not expect more.
    refresh = serializers.CharField(write_only=True)

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        if jwt_settings.CHECK_REVOKE_TOKEN:
            user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
            user = get_user_model().objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
            if user is not None and refresh.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
                user.password
            ):
                raise exceptions.AuthenticationFailed("The user's password has been changed.", "password_changed")
        return super().validate(attrs)


class RefreshApi(TokenRefreshView):
    serializer_class = RefreshInput

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ObjectDoesNotExist as exc:
            raise exceptions.AuthenticationFailed("No active account found for the given token.") from exc
