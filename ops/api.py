"""Operations endpoints for admins: queue depths (`ops/queues/`) and Prometheus metrics
(`ops/metrics/`). Both read only; neither touches a balance."""

import hmac
import os

from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.permissions import IsAdmin
from ops import metrics
from ops.report import queue_report

_QUEUE = inline_serializer(
    "OpsQueue",
    {
        "queue": serializers.CharField(),
        "shard": serializers.IntegerField(required=False),
        "depth": serializers.IntegerField(allow_null=True, help_text="messages waiting in the broker"),
        "consumers": serializers.IntegerField(allow_null=True, help_text="live worker processes consuming it"),
        "workers": serializers.ListField(child=serializers.CharField()),
        "oldest_waiting_age_seconds": serializers.FloatField(
            required=False, help_text="shards: age of the oldest queued charge or approving deposit (0: none)"
        ),
        "waiting_sellers": serializers.IntegerField(required=False, help_text="shards: sellers with waiting intents"),
        "seconds_since_settle": serializers.IntegerField(
            required=False, allow_null=True, help_text="shards: since the shard last settled intents (null: unknown)"
        ),
        "stalled": serializers.BooleanField(
            required=False,
            help_text="shards: work older than LEDGER_STALL_AFTER and nothing settled for as long",
        ),
    },
)
_QUEUES = inline_serializer(
    "OpsQueues",
    {
        "broker": serializers.CharField(help_text='"ok", or why the broker did not answer (depths are then null)'),
        "queues": _QUEUE.__class__(many=True, help_text="every shard queue, consumed or not"),
        "other_queues": _QUEUE.__class__(many=True),
        "oldest_waiting": inline_serializer(
            "OpsOldestWaiting",
            {
                "seller": serializers.IntegerField(),
                "name": serializers.CharField(),
                "queue": serializers.CharField(),
                "waiting": serializers.IntegerField(help_text="queued charges plus approving deposits"),
                "oldest_queued_at": serializers.DateTimeField(),
                "age_seconds": serializers.FloatField(),
            },
            many=True,
        ),
        "fulfilment": inline_serializer(
            "OpsFulfilment",
            {
                "provider": serializers.CharField(),
                "charges": serializers.DictField(
                    child=serializers.IntegerField(), help_text="charges holding credit, by stage"
                ),
                "oldest_age_seconds": serializers.DictField(
                    child=serializers.FloatField(), help_text="by stage: since the oldest was reserved"
                ),
                "resending": serializers.IntegerField(
                    help_text="sent charges not answered yet that were sent more than once under their external id (the provider had no record of them, or refused them before processing)"
                ),
                "unknown_overdue": serializers.IntegerField(
                    help_text="unknown or resent outcomes first sent over PROVIDER_UNKNOWN_ALERT_AFTER ago: someone should look"
                ),
                "provider_mismatches": serializers.IntegerField(
                    help_text="charges held because the provider answered about another transaction"
                ),
                "gate": serializers.DictField(help_text="the provider's breaker, pause and rate window"),
            },
        ),
        "provider_floats": inline_serializer(
            "OpsProviderFloat",
            {
                "provider": serializers.CharField(),
                "available": serializers.IntegerField(allow_null=True, help_text="null: no poll answered yet"),
                "currency": serializers.CharField(),
                "holding": serializers.IntegerField(allow_null=True),
                "polled_at": serializers.DateTimeField(allow_null=True, help_text="of the last poll that answered"),
                "low_threshold": serializers.IntegerField(allow_null=True, help_text="PROVIDER_FLOAT_LOW (null: none)"),
                "low": serializers.BooleanField(help_text="below the threshold at the last poll: fund the account"),
                "low_since": serializers.DateTimeField(allow_null=True),
                "ok": serializers.BooleanField(help_text="routing may send sales there (provider_float_ok)"),
                "error": serializers.CharField(allow_null=True, help_text="why the last poll failed"),
                "error_at": serializers.DateTimeField(allow_null=True),
            },
            many=True,
            help_text="our balance at each provider (the float)",
        ),
        "replica": inline_serializer(
            "OpsReplica",
            {
                "lag_seconds": serializers.FloatField(
                    allow_null=True, help_text="behind the primary (null: not streaming or not answering)"
                ),
                "max_lag_seconds": serializers.FloatField(help_text="DATABASE_REPLICA_MAX_LAG"),
                "heavy_reads": serializers.ChoiceField(
                    ["replica", "primary"], help_text="where lists and the transaction export read now"
                ),
                "error": serializers.CharField(allow_null=True, help_text="why the lag is unknown"),
            },
            allow_null=True,
            help_text="the read replica; null when none is configured",
        ),
    },
)


class OpsQueuesApi(APIView):
    """Depth, consumers and stall verdict of every shard queue, and the sellers whose intents have
    waited longest."""

    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, SessionAuthentication]
    permission_classes = [IsAdmin]

    @extend_schema(responses=_QUEUES)
    def get(self, request):
        return Response(queue_report())


class MetricsTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <METRICS_TOKEN>` for a Prometheus scraper, which has no user. Any
    other bearer token falls through to the JWT authenticator."""

    def authenticate(self, request):
        token = os.environ.get("METRICS_TOKEN", "")
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if token and scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return (None, "metrics-token")
        return None

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class IsAdminOrMetricsToken(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.auth == "metrics-token" or IsAdmin().has_permission(request, view)


class MetricsApi(APIView):
    """Prometheus text exposition: queue depths and consumers, charges and deposits by status,
    settle throughput (a counter), the last audit. For admins, or with `METRICS_TOKEN`."""

    authentication_classes = [
        MetricsTokenAuthentication,
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
        SessionAuthentication,
    ]
    permission_classes = [IsAdminOrMetricsToken]

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request):
        return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)


class MetricsTokenScheme(OpenApiAuthenticationExtension):
    target_class = MetricsTokenAuthentication
    name = "metricsToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "the METRICS_TOKEN of the deployment"}
