import django_filters

from ledger.models import Charge, Deposit, Entry


class DepositFilter(django_filters.FilterSet):
    seller = django_filters.NumberFilter(field_name="seller_id")
    status = django_filters.ChoiceFilter(choices=Deposit.Status.choices)

    class Meta:
        model = Deposit
        fields = ["seller", "status"]


class ChargeFilter(django_filters.FilterSet):
    seller = django_filters.NumberFilter(field_name="seller_id")
    status = django_filters.ChoiceFilter(choices=Charge.Status.choices)
    phone_number = django_filters.CharFilter(method="filter_phone")
    batch = django_filters.NumberFilter(field_name="batch_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Charge
        fields = ["seller", "status", "phone_number", "batch", "created_after", "created_before"]

    def filter_phone(self, queryset, name, value):
        from ledger.fields import normalize_phone

        return queryset.filter(phone_number=normalize_phone(value) or value)


class EntryFilter(django_filters.FilterSet):
    seller = django_filters.NumberFilter(field_name="seller_id")
    kind = django_filters.ChoiceFilter(choices=Entry.Kind.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    seq_after = django_filters.NumberFilter(field_name="seq", lookup_expr="gt")

    class Meta:
        model = Entry
        fields = ["seller", "kind", "created_after", "created_before", "seq_after"]
