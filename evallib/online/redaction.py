"""Emails, phone numbers and card numbers (Luhn-checked) replaced with ``[EMAIL]``,
``[PHONE]``, ``[CARD]`` before anything is written; extra patterns extend it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import EvallibError

__all__ = ["DEFAULT_REDACTOR", "Redactor", "luhn_ok", "redact"]

_EMAIL = r"(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
# 13-19 digits in one run, in groups of four (16: 4-4-4-4, 19: 4-4-4-4-3) or Amex 4-6-5,
# separated by one space or dash; the Luhn check decides.
_CARD = (r"(?<![\w-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"
         r"|\d{4}([ -])\d{6}\2\d{5})(?![\w]|[ -]\d)")
# A country code and/or an area code with a separator, then 3-4 + 3-4 digits; or +E.164.
# Bare digit runs are not phones (order numbers, ids); dates, versions and IPs do not fit.
_PHONE = (r"(?<![\w+.-])(?<!\d[ .])(?:(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{2,4}[ .-])"
          r"\d{3,4}[ .-]?\d{3,4}|\+\d{8,15})(?![\w-]|[ .]\d)")


def luhn_ok(digits: str) -> bool:
    """The card-number checksum (ISO/IEC 7812): cuts false positives on long numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Redactor:
    """Replaces personal data in text (and in strings inside JSON-like values).

    ``Redactor(extra={"EMPLOYEE_ID": r"\\bEMP-\\d{6}\\b"})`` adds a pattern replaced by
    ``[EMPLOYEE_ID]``; ``emails``/``phones``/``cards`` turn the built-ins off."""

    def __init__(self, extra: Mapping[str, str | re.Pattern[str]] | None = None, *,
                 emails: bool = True, phones: bool = True, cards: bool = True) -> None:
        rules: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = []
        if cards:  # before phones: a card number must not be half-taken as a phone
            rules.append(("CARD", re.compile(_CARD), lambda s: _card_digits_ok(s)))
        if emails:
            rules.append(("EMAIL", re.compile(_EMAIL), None))
        if phones:
            rules.append(("PHONE", re.compile(_PHONE), None))
        for label, pattern in (extra or {}).items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", label):
                raise EvallibError(f"redaction label {label!r}: use UPPER_SNAKE_CASE")
            try:
                rules.append((label, re.compile(pattern), None))
            except re.error as e:
                raise EvallibError(f"redaction pattern {label}: {e}") from None
        self.rules = rules

    def __call__(self, text: str) -> str:
        for label, pattern, accept in self.rules:
            def sub(m: re.Match[str], label: str = label,
                    accept: Callable[[str], bool] | None = accept) -> str:
                return f"[{label}]" if accept is None or accept(m.group(0)) else m.group(0)

            text = pattern.sub(sub, text)
        return text

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (dicts, lists, strings)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _card_digits_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


DEFAULT_REDACTOR = Redactor()


def redact(text: str) -> str:
    """`DEFAULT_REDACTOR` on one string."""
    return DEFAULT_REDACTOR(text)
