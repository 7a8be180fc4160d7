"""Filters chatd always has: the message length limit of PROTOCOL.md §7."""
from __future__ import annotations

from typing import Any, Callable

from chatd import hookimpl
from chatd.errors import MessageTooLong
from chatd.filters import FilterContext, InboundFilter


class MaxLengthFilter(InboundFilter):
    """Refuses messages longer than `max_message_chars` with MESSAGE_TOO_LONG."""

    name = "max_length"

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """Pass the content through, or raise MessageTooLong."""
        limit = ctx.settings.max_message_chars
        if len(content) > limit:
            raise MessageTooLong(f"Message exceeds maximum length of {limit} characters")
        return content


@hookimpl
def register_filters(register: Callable[[Any], None]) -> None:
    """Register the length limit."""
    register(MaxLengthFilter())
