from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

_STATUS = inline_serializer(
    "HealthStatus", {"status": serializers.CharField(), "checks": serializers.DictField(required=False)}
)


class HealthApi(APIView):
    """The process is up. No dependency is checked (that is `ready`)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=_STATUS)
    def get(self, request):
        return Response({"status": "ok"})


class ReadyApi(APIView):
    """PostgreSQL and Redis both answer."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: _STATUS, 503: _STATUS})
    def get(self, request):
        checks = {"database": _check_database(), "redis": _check_redis()}
        ok = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means "not ready"; the reason is reported, not raised
        return f"error: {exc.__class__.__name__}"


def _check_redis() -> str:
    from core import redis_client

    try:
        client = redis_client.client(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        return "ok"
    except Exception as exc:  # as above
        return f"error: {exc.__class__.__name__}"
