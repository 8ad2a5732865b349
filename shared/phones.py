"""Contact validation: E.164 phone numbers (phonenumbers) and names."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat


def normalise_phone(raw: object) -> str:
    """The E.164 form of ``raw``, or ``ValueError`` saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("phone is required, in E.164 form such as +14155550100")
    text = raw.strip()
    if not text.startswith("+"):
        raise ValueError("phone must start with + and the country code, e.g. +14155550100")
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible phone number (wrong length for its country)")
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
