"""`GET /reports/margin/`: the margin report (ledger/reports.py) for staff, as JSON or, with
`?format=csv`, as CSV. Errors keep the contract's JSON body either way."""

import csv
import io
from dataclasses import asdict
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import renderers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsStaffReader
from ledger.reports import GROUPS, margin_report

MAX_DAYS = 366
DEFAULT_DAYS = 30
COLUMNS = ("key", "name", "charges", "revenue", "cost", "margin")


def _instant(help_text: str) -> serializers.DateTimeField:
    """An ISO 8601 date-time, or a date (its midnight in UTC, the project's time zone)."""
    return serializers.DateTimeField(required=False, input_formats=["iso-8601", "%Y-%m-%d"], help_text=help_text)


class MarginQuery(serializers.Serializer):
    # `from` is a Python keyword: declared below under its own name.
    to = _instant("End, exclusive (default: now).")
    group_by = serializers.ChoiceField(choices=GROUPS, default="day")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = _instant(f"Start, inclusive (default: {DEFAULT_DAYS} days ago).")
        return fields

    def validate(self, attrs):
        until = attrs.get("to") or timezone.now()
        since = attrs.get("from") or until - timedelta(days=DEFAULT_DAYS)
        if since >= until:
            raise serializers.ValidationError({"from": ["Must be before `to`."]})
        if until - since > timedelta(days=MAX_DAYS):
            raise serializers.ValidationError({"from": [f"The period is at most {MAX_DAYS} days."]})
        return {"since": since, "until": until, "group_by": attrs["group_by"]}


class MarginRowOutput(serializers.Serializer):
    key = serializers.CharField(help_text="The day (ISO date), or the id of the operator, product or seller.")
    name = serializers.CharField()
    charges = serializers.IntegerField()
    revenue = serializers.IntegerField(help_text="What the sellers paid for them.")
    cost = serializers.IntegerField(help_text="What the providers charge for them.")
    margin = serializers.IntegerField()


class MarginReportOutput(serializers.Serializer):
    """The answer's shape (for the schema)."""

    currency = serializers.CharField()
    group_by = serializers.CharField()
    from_ = serializers.DateTimeField()
    to = serializers.DateTimeField()
    rows = MarginRowOutput(many=True)
    total = MarginRowOutput()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class MarginCsvRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for row in [*data["rows"], data["total"]]:
            writer.writerow([row[column] for column in COLUMNS])
        return out.getvalue().encode()


class MarginReportApi(APIView):
    """Margin per day, operator, product or seller over a period, with the total."""

    permission_classes = [IsStaffReader]
    renderer_classes = [renderers.JSONRenderer, MarginCsvRenderer]

    @extend_schema(parameters=[MarginQuery], responses=MarginReportOutput)
    def get(self, request):
        query = MarginQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        rows = margin_report(**params)
        total = {
            "key": "total",
            "name": "total",
            **{f: sum(getattr(r, f) for r in rows) for f in ("charges", "revenue", "cost", "margin")},
        }
        data = {
            "currency": settings.PLATFORM_CURRENCY,
            "group_by": params["group_by"],
            "from": params["since"],
            "to": params["until"],
            "rows": [asdict(r) for r in rows],
            "total": total,
        }
        response = Response(data)
        if request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = f'attachment; filename="margin-by-{params["group_by"]}.csv"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        # An error is the contract's JSON body, whatever format was asked for.
        if getattr(response, "exception", False):
            request.accepted_renderer, request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
