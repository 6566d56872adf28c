"""Input fields with the contract's strict rules (money is an integer, phones are mobiles). The
rules themselves are `core.charge_rules`, which the CSV import applies too."""

from django.conf import settings
from rest_framework import serializers

from core import charge_rules
from core.charge_rules import normalize_phone  # noqa: F401  (the API's filters import it from here)


class AmountField(serializers.Field):
    """A positive integer of the smallest currency unit, at most `LEDGER_MAX_AMOUNT`.

    Refuses floats (even 5000.0), strings and booleans, where DRF's IntegerField would coerce."""

    default_error_messages = charge_rules.AMOUNT_MESSAGES

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        problem = charge_rules.amount_problem(data)
        if problem:
            self.fail(problem, max_value=settings.LEDGER_MAX_AMOUNT)
        return data

    def to_representation(self, value):
        return int(value)


class PhoneNumberField(serializers.CharField):
    default_error_messages = {"invalid_phone": charge_rules.PHONE_INVALID}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", charge_rules.PHONE_MAX_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):  # a JSON number would lose leading zeros; ask for a string
            self.fail("invalid_phone")
        normalized = charge_rules.normalize_phone(super().to_internal_value(data))
        if normalized is None:
            self.fail("invalid_phone")
        return normalized
