"""Opt-in message filters: a PII redactor and a configurable blocklist.

Both are off until configured in chatd's settings (read when a message passes, so the
`[plugins.*]` tables of the running configuration apply):

```toml
[plugins.pii]
enabled = true            # off by default
outbound = true           # redact assistant replies as they stream (default true)
inbound = false           # also redact users' messages before they are stored
kinds = ["email", "phone", "card"]
replacement = "[{kind} redacted]"

[plugins.blocklist]
words = ["forbidden phrase"]   # whole words or phrases, case-insensitive
patterns = ["\\bsecret-\\d+\\b"]  # regular expressions, case-insensitive
reason = "it contains a blocked term"
message_types = ["user"]       # which posted messages are checked
```
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable

from chatd import hookimpl
from chatd.errors import ConfigError, Filtered
from chatd.filters import FilterContext, InboundFilter, OutboundFilter, OutboundSession

from chatd_filters.pii import KINDS, Redactor, StreamRedactor


def plugin_config(settings: Any, name: str) -> dict[str, Any]:
    """The `[plugins.NAME]` table of chatd's settings, or an empty one."""
    tables = getattr(settings, "plugins", None) or {}
    table = tables.get(name) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"[plugins.{name}] must be a table")
    return table


def _key(table: dict[str, Any]) -> str:
    return json.dumps(table, sort_keys=True, default=str)


@functools.lru_cache(maxsize=32)
def _redactor(key: str) -> Redactor | None:
    table = json.loads(key)
    if not table.get("enabled", False):
        return None
    try:
        return Redactor(kinds=table.get("kinds", KINDS), replacement=str(table.get("replacement", "[{kind} redacted]")))
    except ValueError as e:
        raise ConfigError(f"[plugins.pii]: {e}") from None


def pii_redactor(settings: Any) -> Redactor | None:
    """The configured redactor, or None when `[plugins.pii]` is not enabled."""
    return _redactor(_key(plugin_config(settings, "pii")))


class PIIOutbound(OutboundFilter):
    """Redacts emails, phone numbers and card numbers from assistant replies, chunk-safely."""

    name = "pii"

    def session(self, ctx: FilterContext) -> OutboundSession:
        """A redacting session when enabled, else a pass-through one."""
        table = plugin_config(ctx.settings, "pii")
        redactor = pii_redactor(ctx.settings)
        if redactor is None or not table.get("outbound", True):
            return OutboundSession()
        return PIISession(StreamRedactor(redactor))


class PIISession(OutboundSession):
    """One reply's redaction state."""

    def __init__(self, stream: StreamRedactor) -> None:
        self.stream = stream

    def feed(self, text: str) -> str:
        """Release the redacted text that is final."""
        return self.stream.feed(text)

    def flush(self) -> str:
        """Release the rest."""
        return self.stream.flush()


class PIIInbound(InboundFilter):
    """Redacts personal data from posted messages when `[plugins.pii] inbound = true`."""

    name = "pii"

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """The content, redacted when enabled."""
        redactor = pii_redactor(ctx.settings)
        if redactor is None or not plugin_config(ctx.settings, "pii").get("inbound", False):
            return content
        return redactor.redact(content)


@functools.lru_cache(maxsize=32)
def _blocklist(key: str) -> tuple[re.Pattern[str] | None, str, frozenset[str]]:
    table = json.loads(key)
    alternatives = [rf"(?<!\w){re.escape(str(w).strip())}(?!\w)" for w in table.get("words", []) if str(w).strip()]
    for p in table.get("patterns", []):
        try:
            re.compile(p)
        except re.error as e:
            raise ConfigError(f"[plugins.blocklist] pattern {p!r}: {e}") from None
        alternatives.append(f"(?:{p})")
    enabled = table.get("enabled", True) and alternatives
    pattern = re.compile("|".join(alternatives), re.IGNORECASE) if enabled else None
    reason = str(table.get("reason", "it contains a blocked term"))
    return pattern, reason, frozenset(table.get("message_types", ["user"]))


class BlocklistFilter(InboundFilter):
    """Refuses messages containing a configured word, phrase or pattern with FILTERED."""

    name = "blocklist"

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """The content unchanged, or raise Filtered naming the blocked term."""
        pattern, reason, types = _blocklist(_key(plugin_config(ctx.settings, "blocklist")))
        if pattern is None or ctx.message_type not in types:
            return content
        m = pattern.search(content)
        if m is not None:
            raise Filtered(f"Message refused: {reason} ({m.group(0)!r})")
        return content


@hookimpl
def register_filters(register: Callable[[Any], None]) -> None:
    """Register the blocklist, then the PII redactor (inbound and outbound); all off unless configured."""
    register(BlocklistFilter())
    register(PIIInbound())
    register(PIIOutbound())
