"""In-flight replies: text so far, last chunk index and owner, readable by any joiner."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any


@dataclass
class InflightReply:
    """The live state of one reply being generated."""

    message_id: Any
    conversation_id: Any
    reply_to: Any
    owner: str
    text: str = ""
    index: int = -1

    def snapshot(self) -> dict:
        """The `joined.active_streams` entry."""
        return {"message_id": self.message_id, "content": self.text, "index": self.index}


class InflightRegistry(abc.ABC):
    """Where in-flight replies are kept; the Redis implementation shares them across processes."""

    #: Whether other processes see these replies (then liveness comes from owner leases).
    shared = False

    async def start(self, owner: str) -> None:
        """Begin serving as `owner` (the Redis registry takes and refreshes its lease)."""

    async def close(self) -> None:
        """Stop (the Redis registry drops its owner lease)."""

    async def owner_alive(self, owner: str | None) -> bool | None:
        """Whether a reply owner still runs; None when this registry cannot tell (use the pid check)."""
        return None

    async def claim_sweep(self, message_id: Any) -> bool:
        """Reserve the right to finish an orphaned reply (one sweeper wins when several run)."""
        return True

    @abc.abstractmethod
    async def claim(self, conversation_id: Any, reply_to: Any) -> bool:
        """Reserve the right to answer a message; False if it is already being answered."""

    @abc.abstractmethod
    async def unclaim(self, conversation_id: Any, reply_to: Any) -> None:
        """Give up a claim that never became a reply."""

    @abc.abstractmethod
    async def add(self, reply: InflightReply) -> None:
        """Register a claimed reply once its message exists."""

    @abc.abstractmethod
    async def update(self, reply: InflightReply) -> None:
        """Record new text and index."""

    @abc.abstractmethod
    async def release(self, reply: InflightReply) -> None:
        """The reply is finished or stored: forget it."""

    @abc.abstractmethod
    async def active(self, conversation_id: Any) -> list[InflightReply]:
        """Replies of the conversation still being generated."""

    @abc.abstractmethod
    async def get(self, message_id: Any) -> InflightReply | None:
        """One reply by its message id."""


class LocalInflight(InflightRegistry):
    """One process's in-flight replies, in memory; reads never yield to the event loop."""

    def __init__(self) -> None:
        self._by_id: dict[Any, InflightReply] = {}
        self._by_reply_to: dict[tuple[Any, Any], Any] = {}

    async def claim(self, conversation_id: Any, reply_to: Any) -> bool:
        """Refuse a second reply to the same message."""
        key = (conversation_id, reply_to)
        if key in self._by_reply_to:
            return False
        self._by_reply_to[key] = None
        return True

    async def unclaim(self, conversation_id: Any, reply_to: Any) -> None:
        """Drop the reservation."""
        self._by_reply_to.pop((conversation_id, reply_to), None)

    async def add(self, reply: InflightReply) -> None:
        """Index the reply by message id."""
        self._by_reply_to[(reply.conversation_id, reply.reply_to)] = reply.message_id
        self._by_id[reply.message_id] = reply

    async def update(self, reply: InflightReply) -> None:
        """The object is shared: nothing to copy."""

    async def release(self, reply: InflightReply) -> None:
        """Forget the reply."""
        self._by_id.pop(reply.message_id, None)
        self._by_reply_to.pop((reply.conversation_id, reply.reply_to), None)

    async def active(self, conversation_id: Any) -> list[InflightReply]:
        """Replies of one conversation."""
        return [r for r in self._by_id.values() if r.conversation_id == conversation_id]

    async def get(self, message_id: Any) -> InflightReply | None:
        """Lookup by id."""
        return self._by_id.get(message_id)

    def __len__(self) -> int:
        return len(self._by_reply_to)
