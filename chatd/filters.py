"""The message filter interfaces plugins implement."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FilterContext:
    """Who sent what where, for an inbound filter's decision."""

    user_id: Any
    conversation_id: Any
    message_type: str
    settings: Any


class InboundFilter:
    """Checks or rewrites a message before it is stored.

    Raise `chatd.errors.Filtered` (or `MessageTooLong`) to refuse it; return the content,
    rewritten or not, to accept it.
    """

    name: str = "inbound"

    async def inbound(self, content: str, ctx: FilterContext) -> str:
        """Return the (possibly rewritten) content, or raise to refuse it."""
        return content


class OutboundSession:
    """Rewrites one assistant reply as it streams; may hold back text across deltas."""

    def feed(self, text: str) -> str:
        """Take a new delta; return the text that is safe to emit now."""
        return text

    def flush(self) -> str:
        """The reply ended: return whatever was held back, rewritten."""
        return ""


class OutboundFilter:
    """Makes an `OutboundSession` for each assistant reply."""

    name: str = "outbound"

    def session(self, ctx: FilterContext) -> OutboundSession:
        """A fresh session for one reply."""
        return OutboundSession()
