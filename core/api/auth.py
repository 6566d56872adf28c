"""Login and refresh: simplejwt's views, plus throttling of failed logins per username and per
client address, and a refresh that answers 401 (not 500) for a user deleted since."""

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import exceptions
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from core.throttling import client_address, login_failed, login_wait


class LoginApi(TokenObtainPairView):
    def post(self, request, *args, **kwargs):
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username") if isinstance(data.get("username"), str) else ""
        address = client_address(request)
        wait = login_wait(username=username, address=address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many failed logins; try again later.")
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            login_failed(username=username, address=address)
            raise


class RefreshApi(TokenRefreshView):
    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ObjectDoesNotExist as exc:
            raise exceptions.AuthenticationFailed("No active account found for the given token.") from exc
