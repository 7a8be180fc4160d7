"""Find and redact personal data: email addresses, phone numbers and card numbers (Luhn-checked)."""
from __future__ import annotations

import re
from collections.abc import Iterable

KINDS = ("email", "phone", "card")

_EMAIL = (r"(?P<email>[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,})")
# 13 to 19 digits, optionally grouped by single spaces or dashes.
_CARD = r"(?P<card>(?<![\d\-])\d(?:[ \-]?\d){12,18}(?![\d]))"
_PHONE = (r"(?P<phone>(?<![\w+])(?:"
          r"\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){2,5}"            # international: +44 20 7946 0958
          r"|\(?\d{3}\)?[ .\-]?\d{3}[ .\-]\d{4}"                # North American: (415) 555-0100
          r"|0\d{2,4}[ .\-]?\d{3,4}[ .\-]?\d{3,4}"              # national with trunk 0: 020 7946 0958
          r")(?![\w]))")

PATTERN = re.compile("|".join((_EMAIL, _CARD, _PHONE)))

#: Characters a phone or card number is made of; a reply ending in a run of them is held back.
_NUMERIC_TAIL = re.compile(r"[\d+() .\-]+\Z")
_WORD_TAIL = re.compile(r"\S+\Z")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (as card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


class Redactor:
    """Replaces the enabled kinds of personal data with `replacement` (`{kind}` is filled in)."""

    def __init__(self, kinds: Iterable[str] = KINDS, replacement: str = "[{kind} redacted]") -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind(s): {', '.join(sorted(unknown))}")
        self.replacement = replacement

    def _kind(self, m: re.Match[str]) -> str | None:
        if m.group("email") is not None:
            return "email"
        if m.group("card") is not None:
            digits = re.sub(r"\D", "", m.group("card"))
            return "card" if luhn_valid(digits) else None
        n = _digit_count(m.group("phone"))
        return "phone" if 7 <= n <= 15 else None

    def matches(self, text: str, context: str = "") -> list[tuple[int, int, str]]:
        """(start, end, kind) of every enabled match in text, in order; `context` is the text just before it."""
        out, off = [], len(context)
        for m in PATTERN.finditer(context + text):
            kind = self._kind(m)
            if kind is not None and kind in self.kinds and m.start() >= off:
                out.append((m.start() - off, m.end() - off, kind))
        return out

    def redact(self, text: str, context: str = "") -> str:
        """The text with every match replaced."""
        parts, pos = [], 0
        for start, end, kind in self.matches(text, context):
            parts.append(text[pos:start])
            parts.append(self.replacement.format(kind=kind))
            pos = end
        parts.append(text[pos:])
        return "".join(parts)


class StreamRedactor:
    """Redacts a text that arrives in pieces: a match split across two pieces is still caught.

    It holds back the tail that could still grow into a match (the last word, or a trailing
    run of digits and separators), at most `max_hold` characters.
    """

    def __init__(self, redactor: Redactor, max_hold: int = 256) -> None:
        self.redactor = redactor
        self.max_hold = max_hold
        self.buffer = ""
        self.context = ""  # the last character already released, for the patterns' look-behinds

    def _cut(self) -> int:
        buf = self.buffer
        cut = len(buf)
        for tail in (_WORD_TAIL, _NUMERIC_TAIL):
            m = tail.search(buf)
            if m is not None:
                cut = min(cut, m.start())
        cut = max(cut, len(buf) - self.max_hold)
        for start, end, _ in self.redactor.matches(buf, self.context):  # never cut through a match
            if start < cut < end:
                cut = start
        return cut

    def feed(self, text: str) -> str:
        """Take a piece; return the redacted text that can no longer change."""
        self.buffer += text
        cut = self._cut()
        if cut <= 0:
            return ""
        ready, self.buffer = self.buffer[:cut], self.buffer[cut:]
        out = self.redactor.redact(ready, self.context)
        self.context = ready[-1:]
        return out

    def flush(self) -> str:
        """The text ended: redact and return whatever was held back."""
        rest, self.buffer = self.buffer, ""
        out = self.redactor.redact(rest, self.context)
        self.context = rest[-1:] or self.context
        return out
