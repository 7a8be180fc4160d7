"""In-flight replies of one process, in memory."""
from __future__ import annotations

from chatd.bus import Bus, conversation_channel
from chatd.bus.events import Event
from chatd.inflight import InflightRegistry, InflightReply
from chatd.models import Id


class LocalInflight(InflightRegistry):
    """One process's in-flight replies, in memory; reads never yield to the event loop."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self._by_id: dict[Id, InflightReply] = {}
        self._by_reply_to: dict[tuple[Id, Id], Id | None] = {}  # claims; None until the reply exists

    async def claim(self, conversation_id: Id, reply_to: Id) -> bool:
        """Refuse a second reply to the same message."""
        key = (conversation_id, reply_to)
        if key in self._by_reply_to:
            return False
        self._by_reply_to[key] = None
        return True

    async def unclaim(self, conversation_id: Id, reply_to: Id) -> None:
        """Drop the reservation."""
        self._by_reply_to.pop((conversation_id, reply_to), None)

    async def add(self, reply: InflightReply) -> None:
        """Index the reply by message id."""
        self._by_reply_to[(reply.conversation_id, reply.reply_to)] = reply.message_id
        self._by_id[reply.message_id] = reply

    async def publish_chunk(self, reply: InflightReply, delta: str, event: Event) -> None:
        """The reply object is the shared state: only publish."""
        await self.bus.publish(conversation_channel(reply.conversation_id), event)

    async def release(self, reply: InflightReply) -> None:
        """Forget the reply."""
        self._by_id.pop(reply.message_id, None)
        self._by_reply_to.pop((reply.conversation_id, reply.reply_to), None)

    async def active(self, conversation_id: Id) -> list[InflightReply]:
        """Replies of one conversation."""
        return [r for r in self._by_id.values() if r.conversation_id == conversation_id]

    async def get(self, message_id: Id) -> InflightReply | None:
        """Lookup by id."""
        return self._by_id.get(message_id)

    def __len__(self) -> int:
        return len(self._by_reply_to)
