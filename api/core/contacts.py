"""Normalising what shops send about a customer before it reaches the database."""

import phonenumbers


def e164(raw: str | None, region: str | None = None) -> str | None:
    """The number in E.164 when it parses as a valid number, else None (the raw text is not
    kept as a phone: a wrong number is worse than none for messaging)."""
    if not raw or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
