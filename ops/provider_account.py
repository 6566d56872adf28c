"""Admin endpoints of our accounts at the providers: the daily close (run one for a day through a
worker, list the results) and the funding of an account (a term of the close's equation)."""

from datetime import timedelta

import django_filters
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.permissions import IsAdmin
from ledger.provider_account.close import EARLIEST_DAY
from ledger.provider_account.models import ProviderClose, ProviderFunding
from providers import default_provider_name, provider_names
from workers.provider_account_tasks import provider_close_on_commit


class _Admin:
    authentication_classes = [*api_settings.DEFAULT_AUTHENTICATION_CLASSES, SessionAuthentication]
    permission_classes = [IsAdmin]


def _configured(name: str | None) -> str:
    """A configured provider's name; none given: the default one."""
    if not name:
        return default_provider_name()
    if name not in provider_names():
        raise serializers.ValidationError(f"not a configured provider (configured: {', '.join(provider_names())})")
    return name


class ProviderCloseInput(serializers.Serializer):
    date = serializers.DateField(help_text="the UTC day to close, YYYY-MM-DD")
    provider = serializers.CharField(required=False, help_text="default: the default provider")

    def validate_provider(self, value):
        return _configured(value)

    def validate_date(self, value):
        if value > timezone.now().date():
            raise serializers.ValidationError("a day that has not begun cannot be closed")
        if value < EARLIEST_DAY:
            raise serializers.ValidationError(f"a day from {EARLIEST_DAY} on")
        return value


class ProviderCloseOutput(serializers.ModelSerializer):
    class Meta:
        model = ProviderClose
        exclude = ["id"]


class ProviderCloseFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter()
    day_from = django_filters.DateFilter(field_name="day", lookup_expr="gte")
    day_to = django_filters.DateFilter(field_name="day", lookup_expr="lte")

    class Meta:
        model = ProviderClose
        fields = ["provider", "day_from", "day_to"]


class ProviderCloseRequestApi(_Admin, APIView):
    """Run the close of a day through a worker (the import worker's queue); the result replaces
    the day's earlier one and is read from `provider-closes/`."""

    @extend_schema(request=ProviderCloseInput, responses={202: ProviderCloseOutput})
    def post(self, request):
        data = ProviderCloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        provider = data.validated_data.get("provider") or _configured(None)
        day = data.validated_data["date"]
        with transaction.atomic():
            close, _ = ProviderClose.objects.update_or_create(
                provider=provider, day=day, defaults={"status": ProviderClose.Status.QUEUED, "error": ""}
            )
            provider_close_on_commit(day, provider)
        return Response(ProviderCloseOutput(close).data, status=status.HTTP_202_ACCEPTED)


class ProviderCloseListApi(_Admin, ListAPIView):
    """The closes kept, newest day first (`?provider=`, `?day_from=`, `?day_to=`)."""

    serializer_class = ProviderCloseOutput
    filterset_class = ProviderCloseFilter
    queryset = ProviderClose.objects.order_by("-day", "provider")


class ProviderFundingSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(required=False, help_text="default: the default provider")

    class Meta:
        model = ProviderFunding
        fields = ["id", "provider", "amount", "currency", "at", "reference", "recorded_by", "recorded_at"]
        read_only_fields = ["id", "recorded_by", "recorded_at"]
        validators = []  # (provider, reference) is checked in validate(), once the provider is known

    def validate_provider(self, value):
        return _configured(value)

    def validate_currency(self, value):
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise serializers.ValidationError("an ISO 4217 code, e.g. USD")
        return value

    def validate_amount(self, value):
        if value == 0:
            raise serializers.ValidationError("not zero (negative: a withdrawal)")
        return value

    def validate_at(self, value):
        if value > timezone.now() + timedelta(minutes=5):
            raise serializers.ValidationError("in the future")
        if value.date() < EARLIEST_DAY:
            raise serializers.ValidationError(f"from {EARLIEST_DAY} on")
        return value

    def validate(self, attrs):
        attrs.setdefault("provider", _configured(None))
        if ProviderFunding.objects.filter(provider=attrs["provider"], reference=attrs["reference"]).exists():
            raise serializers.ValidationError({"reference": ["already recorded for this provider"]})
        return attrs


class ProviderFundingApi(_Admin, ListAPIView):
    """Our funding of the provider accounts, newest first; POST records one (an admin's, never
    edited: a correction is another entry, negative for a withdrawal)."""

    serializer_class = ProviderFundingSerializer
    queryset = ProviderFunding.objects.order_by("-at", "-id")

    @extend_schema(request=ProviderFundingSerializer, responses={201: ProviderFundingSerializer})
    def post(self, request):
        data = ProviderFundingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        funding = data.save(recorded_by=request.user)
        return Response(ProviderFundingSerializer(funding).data, status=status.HTTP_201_CREATED)
