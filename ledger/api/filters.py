"""The ledger's list filters of the contract, on the bounded fields of `core.api.filters`."""

import django_filters

from core.api.filters import DateTimeFilter, IdFilter
from core.fields import normalize_phone
from ledger.models import Charge, Deposit, Entry


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
