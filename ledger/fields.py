"""Input fields with the contract's strict rules (money is an integer, phones are mobiles)."""

import phonenumbers
from django.conf import settings
from rest_framework import serializers


class AmountField(serializers.Field):
    """A positive integer of the smallest currency unit, at most `LEDGER_MAX_AMOUNT`.

    Refuses floats (even 5000.0), strings and booleans, where DRF's IntegerField would coerce."""

    default_error_messages = {
        "invalid": "Must be an integer number of the smallest currency unit.",
        "min_value": "Must be greater than zero.",
        "max_value": "Must be at most {max_value}.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        if data <= 0:
            self.fail("min_value")
        if data > settings.LEDGER_MAX_AMOUNT:
            self.fail("max_value", max_value=settings.LEDGER_MAX_AMOUNT)
        return data

    def to_representation(self, value):
        return int(value)


def normalize_phone(raw: str) -> str | None:
    """E.164 form of a valid mobile number written in any common way (national or international,
    spaces, dashes, Persian or Arabic digits), else None."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        number = phonenumbers.parse(raw, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneNumberField(serializers.CharField):
    default_error_messages = {"invalid_phone": "Enter a valid mobile phone number."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):  # a JSON number would lose leading zeros; ask for a string
            self.fail("invalid_phone")
        value = super().to_internal_value(data)
        normalized = normalize_phone(value)
        if normalized is None:
            self.fail("invalid_phone")
        return normalized
