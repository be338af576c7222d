"""PII Safe Mode: personal data is replaced by placeholders before text leaves for an AI
provider, and put back where the placeholders come back in the answer.

Detected: emails; phone numbers (international, and Czech/Slovak without a prefix), validated by
python-phonenumbers; Czech/Slovak birth numbers (rodné číslo) validated by date and checksum (the
nine-digit pre-1954 form has no checksum, so it is taken only when written with its slash);
IBANs (mod-97); payment cards (Luhn, 13-19 digits); IPv4 and IPv6 addresses. Each distinct value
gets a stable placeholder such as `[EMAIL_1]` for the whole session. Only counts per category
are ever reported, never values.
"""

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import phonenumbers

# A number glued to a currency or decimal part is a price, not a phone or a card; nor is one
# that is only part of a longer run of digit groups. Czech `,-` marks a price only glued to it
# (`1500,-`): after a space it is punctuation.
NOT_A_PRICE = r"(?!,-)(?!\s?(?:Kč|Kc|CZK|EUR|€|\$|USD|[.,]\d))(?![ \-]?\d)"
NOT_AFTER_DIGITS = r"(?<!\d )(?<!\d-)"

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# Card numbers as they are written: one run of digits, or groups of four (Amex: 4-6-5). No
# price has 13 or more digits, so a currency after one does not make it a price (`,-` after a
# card number in a sentence is punctuation, not Czech price notation); only a further digit
# group ends the match.
CARD = re.compile(
    NOT_AFTER_DIGITS
    + r"(?<![\d.,€$£])"
    + r"(?:\d{13,19}|\d{4}([ \-])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ \-])\d{6}\2\d{5})(?!\d)"
    + r"(?![ \-]?\d)"
)
BIRTH_NUMBER = re.compile(r"(?<![\d/.,])\d{6}(?:/\d{3,4}|\d{4})(?![\d/])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
PHONE = re.compile(
    NOT_AFTER_DIGITS
    + r"(?<![\w+.,/€$£])(?:(?:\+|00)\d{1,3}[ \-]?)?(?:\(?\d{1,4}\)?[ \-]?){1,4}\d{2,4}(?![\w])"
    + NOT_A_PRICE
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_checksum_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def iban_length(candidate: str) -> int:
    """A spaced IBAN may run into the next word: try dropping trailing groups."""
    while candidate:
        if iban_checksum_valid(candidate):
            return len(candidate)
        if " " not in candidate:
            return 0
        candidate = candidate.rsplit(" ", 1)[0]
    return 0


def birth_number_valid(candidate: str) -> bool:
    digits = candidate.replace("/", "")
    if len(digits) == 9 and "/" not in candidate:
        return False
    year, month, day = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    if len(digits) == 10:
        if int(digits[:9]) % 11 % 10 != int(digits[9]):
            return False
        year += 2000 if year < 54 else 1900
    else:
        if year >= 54:
            return False
        year += 1900
    for offset in (0, 20, 50, 70):
        if 1 <= month - offset <= 12:
            month -= offset
            break
    else:
        return False
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return born <= date.today()


def card_valid(candidate: str) -> bool:
    """Luhn-valid, 13-19 digits, from a card network's range (2-6: Mastercard, Amex, Visa,
    Discover and the like)."""
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def phone_valid(candidate: str) -> bool:
    if ISO_DATE.search(candidate):
        return False
    digits = re.sub(r"\D", "", candidate)
    if not 9 <= len(digits) <= 15:
        return False
    regions = [None] if candidate.strip().startswith(("+", "00")) else ["CZ", "SK"]
    for region in regions:
        text = "+" + candidate.strip()[2:] if candidate.strip().startswith("00") else candidate
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def whole(valid: Callable[[str], bool]) -> Callable[[str], int]:
    return lambda candidate: len(candidate) if valid(candidate) else 0


@dataclass(frozen=True)
class Detector:
    category: str
    pattern: re.Pattern[str]
    valid_length: Callable[[str], int]  # how much of a match is personal data (0: none)


# In priority order: an earlier detector wins a span a later one also matches.
DETECTORS = (
    Detector("EMAIL", EMAIL, len),
    Detector("IBAN", IBAN, iban_length),
    Detector("BIRTH_NUMBER", BIRTH_NUMBER, whole(birth_number_valid)),
    Detector("CARD", CARD, whole(card_valid)),
    Detector("IP", IPV4, whole(ip_valid)),
    Detector("IP", IPV6, whole(ip_valid)),
    Detector("PHONE", PHONE, whole(phone_valid)),
)


def find(text: str) -> Iterator[tuple[int, int, str]]:
    """Non-overlapping (start, end, category) spans of personal data, in text order."""
    taken: list[tuple[int, int, str]] = []
    for detector in DETECTORS:
        for match in detector.pattern.finditer(text):
            start = match.start()
            end = start + detector.valid_length(match.group())
            if end == start or any(start < t_end and t_start < end for t_start, t_end, _ in taken):
                continue
            taken.append((start, end, detector.category))
    return iter(sorted(taken))


@dataclass
class SafeSession:
    """Placeholders for one AI call: the same value always maps to the same placeholder."""

    originals: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def placeholder(self, category: str, value: str) -> str:
        if value not in self.placeholders:
            self.counts[category] += 1
            token = f"[{category}_{self.counts[category]}]"
            self.placeholders[value] = token
            self.originals[token] = value
        return self.placeholders[value]

    def redact(self, text: str) -> str:
        pieces, position = [], 0
        for start, end, category in find(text):
            pieces.append(text[position:start])
            pieces.append(self.placeholder(category, text[start:end]))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def restore(self, text: str) -> str:
        if not self.originals:
            return text
        pattern = re.compile("|".join(re.escape(token) for token in self.originals))
        return pattern.sub(lambda match: self.originals[match.group()], text)

    def category_counts(self) -> dict[str, int]:
        """What was redacted, by category only (safe to log and store)."""
        return dict(self.counts)
