"""Query-string filters every app's lists share. Every number is bounded to a bigint and every
date to a sane range, so no query string can reach the database as an out-of-range value (a 500)."""

from datetime import UTC, datetime

import django_filters
from django import forms

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
