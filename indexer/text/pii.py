"""PII redaction: emails, phone numbers, payment cards, IBANs and API-key-like secrets.

User text is redacted once, on arrival, before anything is derived from it (rewrites, traces,
audit digests): a rewrite drops the `@` and the dashes that make an address or a phone number
recognisable, so redacting afterwards would miss them. Each span becomes `[REDACTED:<kind>]`;
`PLACEHOLDER` matches those so query analysis can ignore them.

The patterns aim for few false positives on ordinary docs: reserved example domains are never a
person's address, card numbers must pass the Luhn check and IBANs the mod-97 check.
"""

from __future__ import annotations

import math
import re
from collections import Counter

PLACEHOLDER = re.compile(r"\[REDACTED:[a-z]+\]")

_RESERVED_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_EMAIL_TLDS = (".example", ".test", ".invalid", ".localhost")

_SECRET_RES = [
    re.compile(r"(?<![\w-])sk-(?:[A-Za-z0-9]+-){0,3}[A-Za-z0-9_-]{20,}", re.ASCII),
    re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})", re.ASCII),
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])", re.ASCII),
    re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}", re.ASCII),
    re.compile(r"(?<!\w)dg_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", re.ASCII),
]
# A secret-ish value after a telling name; only the value (group 1) is redacted.
_LABELLED_SECRET_RE = re.compile(
    r"(?i:api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?key)?|token|password|passwd|auth)"
    r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-./+=~]{16,})"
    r"|(?i:bearer)\s+([A-Za-z0-9_\-./+=~]{16,})",
    re.ASCII,
)
_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@((?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24})(?![\w-]|\.[A-Za-z0-9])",
    re.ASCII,
)
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_CARD_RE = re.compile(r"(?<![\w.-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w-]|\.\d)", re.ASCII)
_PHONE_INTL_RE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{2,4}){2,5}(?![\w-]|\.\d)", re.ASCII
)
_PHONE_US_RE = re.compile(
    r"(?<![\w.+/-])(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w/-]|\.\d)", re.ASCII
)


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a digit string (the check that every payment card number passes)."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isascii() or not compact.isalnum():
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`: random keys score high, words and identifiers low."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    # Identifiers such as `form.cleaned_data` or `settings.SECRET` have no digits and low entropy.
    return (
        any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and shannon_entropy(value) >= 3.0
    )


def _email_ok(domain: str) -> bool:
    domain = domain.lower()
    return not (domain in _RESERVED_EMAIL_DOMAINS or domain.endswith(_RESERVED_EMAIL_TLDS))


def find_pii(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Non-overlapping (kind, (start, end)) spans of personal data and secrets, in text order.

    Kinds: secret, email, iban, card, phone. Earlier kinds win where matches overlap.
    """
    candidates: list[tuple[str, int, int]] = []
    for pattern in _SECRET_RES:
        candidates += [("secret", m.start(), m.end()) for m in pattern.finditer(text)]
    for m in _LABELLED_SECRET_RE.finditer(text):
        group = 1 if m.group(1) is not None else 2
        if _looks_random(m.group(group)):
            candidates.append(("secret", m.start(group), m.end(group)))
    for m in _EMAIL_RE.finditer(text):
        # `git@github.com:org/repo` is an SSH address; reserved example domains are never real people.
        if _email_ok(m.group(1)) and not text.startswith(":", m.end()):
            candidates.append(("email", m.start(), m.end()))
    candidates += [("iban", m.start(), m.end()) for m in _IBAN_RE.finditer(text) if iban_valid(m.group())]
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            candidates.append(("card", m.start(), m.end()))
    for m in _PHONE_INTL_RE.finditer(text):
        if 8 <= sum(c.isdigit() for c in m.group()) <= 15:
            candidates.append(("phone", m.start(), m.end()))
    candidates += [("phone", m.start(), m.end()) for m in _PHONE_US_RE.finditer(text)]

    taken: list[tuple[str, tuple[int, int]]] = []
    for kind, start, end in candidates:  # already in priority order
        if all(end <= s or start >= e for _, (s, e) in taken):
            taken.append((kind, (start, end)))
    return sorted(taken, key=lambda item: item[1])


def redact(text: str) -> str:
    """`text` with every span from `find_pii` replaced by ``[REDACTED:<kind>]``."""
    parts: list[str] = []
    pos = 0
    for kind, (start, end) in find_pii(text):
        parts.append(text[pos:start])
        parts.append(f"[REDACTED:{kind}]")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
