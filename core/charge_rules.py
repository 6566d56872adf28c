"""What makes a charge valid, written once.

The API's fields (`core/fields.py`) and the CSV row parser (`ledger/csv_import.py`) both ask
here, so a row accepted in a charge list is exactly a body the charge POST accepts, with the same
messages. Plain functions of plain values: no DRF, no models."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from django.conf import settings
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberType

PHONE_MAX_LENGTH = 64
REFERENCE_MAX_LENGTH = 255  # Charge.reference
IDEMPOTENCY_KEY_MAX_LENGTH = 255

BLANK = "This field may not be blank."
PHONE_INVALID = "Enter a valid mobile phone number."
ID_INVALID = "Must be an id: a positive integer."
_MAX_ID = 2**63 - 1
REFERENCE_TOO_LONG = f"Ensure this field has no more than {REFERENCE_MAX_LENGTH} characters."
# Keyed by the codes DRF's `Field.fail` uses; `max_value` takes the configured maximum.
AMOUNT_MESSAGES = {
    "invalid": "Must be an integer number of the smallest currency unit.",
    "min_value": "Must be greater than zero.",
    "max_value": "Must be at most {max_value}.",
}
# Longer digit strings are above any configurable maximum; this also keeps int() cheap.
_MAX_AMOUNT_DIGITS = 30


# --- Amount: a positive integer of the smallest unit, at most LEDGER_MAX_AMOUNT ----------------


def amount_problem(value: int) -> str | None:
    """The code (a key of AMOUNT_MESSAGES) of what is wrong with an integer amount, or None."""
    if value <= 0:
        return "min_value"
    if value > settings.LEDGER_MAX_AMOUNT:
        return "max_value"
    return None


def amount_message(problem: str) -> str:
    return AMOUNT_MESSAGES[problem].format(max_value=settings.LEDGER_MAX_AMOUNT)


def id_from_text(text: str) -> int | None:
    """A CSV cell naming a catalog object by id (ASCII digits), or None when it is not one."""
    text = text.strip()
    if not text.isascii() or not text.isdecimal() or len(text) > 19 or not 0 < int(text) <= _MAX_ID:
        return None
    return int(text)


def amount_from_text(text: str) -> tuple[int | None, str | None]:
    """A CSV cell as an amount: (amount, None) or (None, message). Digits only (ASCII, Persian or
    Arabic): decimals, exponents and separators are refused, as the API refuses a JSON 5000.0."""
    text = text.strip()
    if not text:
        return None, BLANK
    if text[0] == "-" and text[1:].isdecimal():
        return None, amount_message("min_value")
    if not text.isdecimal():
        return None, amount_message("invalid")
    if len(text) > _MAX_AMOUNT_DIGITS:
        return None, amount_message("max_value")
    value = int(text)
    problem = amount_problem(value)
    return (None, amount_message(problem)) if problem else (value, None)


# --- Reference and idempotency key ----------------------------------------------------------


def reference_problem(text: str) -> str | None:
    return REFERENCE_TOO_LONG if len(text) > REFERENCE_MAX_LENGTH else None


def is_valid_idempotency_key(key: str) -> bool:
    """1-255 printable ASCII characters."""
    return 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH and all(" " <= ch <= "~" for ch in key)


# --- Phone number: a mobile, stored in E.164 --------------------------------------------------

_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


def normalize_phone_by_parser(raw: str) -> str | None:
    """The rule: E.164 form of a valid mobile number written in any common way (national or
    international, spaces, dashes, Persian or Arabic digits), else None."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > PHONE_MAX_LENGTH:
        return None
    try:
        number = phonenumbers.parse(raw, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The general parser is most of a large import's parsing time and of a charge's validation. The two
# forms lists are written in (+<country code><number> and <national prefix><number> of the default
# region) are recognised here directly and handed to the same library's verdict (`number_type`).
# Anything else, and anything the shortcut does not accept, goes through the parser, so the
# shortcut can only ever agree with it (tests/batches/test_csv_import.py compares both on
# thousands of generated inputs).
_CLEAN = str.maketrans(
    {
        **{chr(0x06F0 + d): str(d) for d in range(10)},
        **{chr(0x0660 + d): str(d) for d in range(10)},
        " ": None,
        "-": None,
        "(": None,
        ")": None,
        ".": None,
    }
)


@lru_cache(maxsize=8)
def _shortcut(region: str):
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None
    code = str(metadata.country_code)
    prefixes = []
    # The parser reads the shortest known country code after "+": ours must be the first match.
    if all(int(code[:i]) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE for i in range(1, len(code))):
        prefixes.append("+" + code)
    national = metadata.national_prefix
    if (
        national
        and metadata.national_prefix_for_parsing == national
        and metadata.national_prefix_transform_rule is None
    ):
        prefixes.append(national)
    if not prefixes:
        return None
    alternatives = "|".join(re.escape(p) for p in prefixes)
    pattern = re.compile(f"(?:{alternatives})([1-9][0-9]{{5,14}})")
    strip = re.compile(metadata.national_prefix_for_parsing) if metadata.national_prefix_for_parsing else None
    return pattern, strip, metadata.country_code


def normalize_phone(raw: str) -> str | None:
    """`normalize_phone_by_parser(raw)`, faster for the common forms."""
    if not isinstance(raw, str):
        return None
    shortcut = _shortcut(settings.PHONE_DEFAULT_REGION)
    if shortcut is not None and len(raw) <= PHONE_MAX_LENGTH:
        pattern, strip, code = shortcut
        match = pattern.fullmatch(raw.strip().translate(_CLEAN))
        if match is not None and not (strip and strip.match(match[1])):
            number = PhoneNumber(country_code=code, national_number=int(match[1]))
            if phonenumbers.number_type(number) in _MOBILE_TYPES:
                return f"+{code}{match[1]}"
    return normalize_phone_by_parser(raw)
