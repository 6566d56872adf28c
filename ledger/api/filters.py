"""List filters of the contract. Every number is bounded to a bigint and every date to a sane
range, so no query string can reach the database as an out-of-range value (a 500)."""

from datetime import UTC, datetime

import django_filters
from django import forms

from ledger.fields import normalize_phone
from ledger.models import Charge, Deposit, Entry

BIGINT_MAX = 2**63 - 1
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class IdFilter(django_filters.Filter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


class BoundedIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return None
        if not (_EARLIEST <= value <= _LATEST):
            raise forms.ValidationError("Must be between 1970 and 9000.")
        # In UTC: Python accepts offsets up to 24 h, PostgreSQL refuses those past 15:59.
        return value.astimezone(UTC)


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class DepositFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")
    status = django_filters.ChoiceFilter(choices=Deposit.Status.choices)
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Deposit
        fields = ["seller", "status", "created_after", "created_before"]


class ChargeFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")
    status = django_filters.ChoiceFilter(choices=Charge.Status.choices)
    stage = django_filters.ChoiceFilter(choices=Charge.Stage.choices)
    phone_number = django_filters.CharFilter(method="filter_phone", max_length=64)
    batch = IdFilter(field_name="batch_id")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Charge
        fields = ["seller", "status", "stage", "phone_number", "batch", "created_after", "created_before"]

    def filter_phone(self, queryset, name, value):
        # Any common spelling of the number finds it; a non-number simply matches nothing.
        return queryset.filter(phone_number=normalize_phone(value) or value)


class EntryFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")
    kind = django_filters.ChoiceFilter(choices=Entry.Kind.choices)
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")
    seq_after = IdFilter(field_name="seq", lookup_expr="gt")

    class Meta:
        model = Entry
        fields = ["seller", "kind", "created_after", "created_before", "seq_after"]
