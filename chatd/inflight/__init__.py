"""In-flight replies: text so far, last chunk index and owner, readable by any joiner (the interface).

`local` keeps them in this process; `redis` shares them, with owner leases, across processes.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

from chatd.bus import Bus
from chatd.bus.events import Event
from chatd.models import Id


@dataclass
class InflightReply:
    """The live state of one reply being generated."""

    message_id: Id
    conversation_id: Id
    reply_to: Id
    owner: str
    text: str = ""
    index: int = -1
    text_bytes: int = 0  # len(text) in UTF-8, kept by registries that store the text as appended bytes

    def snapshot(self) -> dict:
        """The `joined.active_streams` entry."""
        return {"message_id": self.message_id, "content": self.text, "index": self.index}


class InflightRegistry(abc.ABC):
    """Where in-flight replies are kept; the Redis implementation shares them across processes."""

    #: Whether other processes see these replies (then liveness comes from owner leases).
    shared = False

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def start(self, owner: str) -> None:
        """Begin serving as `owner` (the Redis registry takes and refreshes its lease)."""

    async def close(self) -> None:
        """Stop (the Redis registry drops its owner lease)."""

    async def owner_alive(self, owner: str | None) -> bool | None:
        """Whether a reply owner still runs; None when this registry cannot tell (use the pid check)."""
        return None

    async def claim_sweep(self, message_id: Id) -> bool:
        """Reserve the right to finish an orphaned reply (one sweeper wins when several run)."""
        return True

    @abc.abstractmethod
    async def claim(self, conversation_id: Id, reply_to: Id) -> bool:
        """Reserve the right to answer a message; False if it is already being answered."""

    @abc.abstractmethod
    async def unclaim(self, conversation_id: Id, reply_to: Id) -> None:
        """Give up a claim that never became a reply."""

    @abc.abstractmethod
    async def add(self, reply: InflightReply) -> None:
        """Register a claimed reply once its message exists."""

    @abc.abstractmethod
    async def publish_chunk(self, reply: InflightReply, delta: str, event: Event) -> None:
        """Record a chunk in the shared state (`reply.text` and `reply.index` already include it), then
        publish its event on the conversation's channel: a joiner's snapshot never misses a chunk that
        it will not also receive live. Raises BusUnavailable when the event could not go out.
        """

    @abc.abstractmethod
    async def release(self, reply: InflightReply) -> None:
        """The reply is finished or stored: forget it."""

    @abc.abstractmethod
    async def active(self, conversation_id: Id) -> list[InflightReply]:
        """Replies of the conversation still being generated."""

    @abc.abstractmethod
    async def get(self, message_id: Id) -> InflightReply | None:
        """One reply by its message id."""
