"""Filters chatd always has: the message length limit of PROTOCOL.md §7."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatd import hookimpl
from chatd.errors import MessageTooLong
from chatd.filters import FilterContext, InboundFilter


class MaxLengthFilter(InboundFilter):
    """Refuses messages longer than `limit` characters (`max_message_chars`) with MESSAGE_TOO_LONG."""

    name = "max_length"

    def __init__(self, limit: int | None = None) -> None:
        #: The limit; None reads `ctx.settings.max_message_chars` for each message.
        self.limit = limit

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """Pass the content through, or raise MessageTooLong."""
        limit = self.limit if self.limit is not None else ctx.settings.max_message_chars
        if len(content) > limit:
            raise MessageTooLong(f"Message exceeds maximum length of {limit} characters")
        return content


class BuiltinFilters:
    """The plugin object of chatd's own filters, made with the settings they need."""

    def __init__(self, max_message_chars: int | None = None) -> None:
        self.max_message_chars = max_message_chars

    @hookimpl
    def register_filters(self, register: Callable[[Any], None]) -> None:
        """Register the length limit."""
        register(MaxLengthFilter(self.max_message_chars))
