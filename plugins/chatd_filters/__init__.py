"""Opt-in message filters: a PII redactor and a configurable blocklist.

Both are off until configured in chatd's settings; their `[plugins.*]` tables are read
once, at start-up, when the filters are registered:

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

import re
from collections.abc import Callable, Mapping
from typing import Any

from chatd import hookimpl
from chatd.errors import ConfigError, Filtered
from chatd.filters import FilterContext, InboundFilter, OutboundFilter, OutboundSession
from chatd_filters.pii import KINDS, Redactor, StreamRedactor


def plugin_config(plugin_settings: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The `[plugins.NAME]` table of the plugin settings, or an empty one."""
    table = plugin_settings.get(name) or {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"[plugins.{name}] must be a table")
    return table


def pii_redactor(table: Mapping[str, Any] | None, direction: str | None = None,
                 default: bool = False) -> Redactor | None:
    """The redactor a `[plugins.pii]` table configures, or None when it is not enabled.

    With `direction` ("inbound" or "outbound"), also None when the table turns that direction
    off (`default` when it does not say); a bad table is a ConfigError either way.
    """
    table = table or {}
    if not table.get("enabled", False):
        return None
    try:
        redactor = Redactor(kinds=table.get("kinds", KINDS),
                            replacement=str(table.get("replacement", "[{kind} redacted]")))
    except ValueError as e:
        raise ConfigError(f"[plugins.pii]: {e}") from None
    if direction is not None and not table.get(direction, default):
        return None
    return redactor


class PIIOutbound(OutboundFilter):
    """Redacts emails, phone numbers and card numbers from assistant replies, chunk-safely."""

    name = "pii"

    def __init__(self, table: Mapping[str, Any] | None = None) -> None:
        self.redactor = pii_redactor(table, "outbound", default=True)

    def session(self, ctx: FilterContext) -> OutboundSession:
        """A redacting session when enabled, else a pass-through one."""
        if self.redactor is None:
            return OutboundSession()
        return PIISession(StreamRedactor(self.redactor))


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

    def __init__(self, table: Mapping[str, Any] | None = None) -> None:
        self.redactor = pii_redactor(table, "inbound")

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """The content, redacted when enabled."""
        if self.redactor is None:
            return content
        return self.redactor.redact(content)


class BlocklistFilter(InboundFilter):
    """Refuses messages containing a configured word, phrase or pattern with FILTERED."""

    name = "blocklist"

    def __init__(self, table: Mapping[str, Any] | None = None) -> None:
        table = table or {}
        alternatives = [rf"(?<!\w){re.escape(str(w).strip())}(?!\w)" for w in table.get("words", []) if str(w).strip()]
        for p in table.get("patterns", []):
            try:
                re.compile(p)
            except re.error as e:
                raise ConfigError(f"[plugins.blocklist] pattern {p!r}: {e}") from None
            alternatives.append(f"(?:{p})")
        enabled = table.get("enabled", True) and alternatives
        self.pattern = re.compile("|".join(alternatives), re.IGNORECASE) if enabled else None
        self.reason = str(table.get("reason", "it contains a blocked term"))
        self.message_types = frozenset(table.get("message_types", ["user"]))

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """The content unchanged, or raise Filtered naming the blocked term."""
        if self.pattern is None or ctx.message_type not in self.message_types:
            return content
        m = self.pattern.search(content)
        if m is not None:
            raise Filtered(f"Message refused: {self.reason} ({m.group(0)!r})")
        return content


@hookimpl
def register_filters(register: Callable[[Any], None], plugin_settings: Mapping[str, Any]) -> None:
    """Register the blocklist, then the PII redactor (inbound and outbound); all off unless configured."""
    pii = plugin_config(plugin_settings, "pii")
    register(BlocklistFilter(plugin_config(plugin_settings, "blocklist")))
    register(PIIInbound(pii))
    register(PIIOutbound(pii))
