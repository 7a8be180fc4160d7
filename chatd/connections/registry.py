"""This process's connections: who is connected, to which conversations, and the join protocol."""
from __future__ import annotations

import asyncio
from typing import Protocol

from chatd.aio import finished_within
from chatd.bus import Bus, Handler, conversation_channel, user_channel
from chatd.bus.events import Event
from chatd.connections.connection import Connection, FetchEvents
from chatd.metrics import Metrics
from chatd.models import Id


class ReplaySource(Protocol):
    """Where a join reads what it replays (the chat service)."""

    async def latest_seq(self, conversation_id: Id) -> int:
        """The conversation's latest stored change."""

    async def active_streams(self, conversation_id: Id) -> list[dict]:
        """The replies being generated, with their text so far and last chunk index."""

    async def events_since(self, conversation_id: Id, since_seq: int) -> list[Event]:
        """The stored changes after a seq, as events."""


class ConnectionRegistry:
    """Routes bus events to this process's connections; subscribes each channel once."""

    def __init__(self, bus: Bus, metrics: Metrics, source: ReplaySource | None = None) -> None:
        self.bus = bus
        self.metrics = metrics
        self.source = source
        self.fetch_events: FetchEvents | None = source.events_since if source is not None else None
        self._subscribing: dict[str, asyncio.Future] = {}
        self.by_user: dict[Id, set[Connection]] = {}
        self.by_conv: dict[Id, set[Connection]] = {}
        self._handlers: dict[str, Handler] = {}
        self.frames_in_flight = 0
        self.accepting_frames = True
        self._idle = asyncio.Event()
        self._idle.set()

    # Frames being handled (for shutdown).
    def frame_started(self) -> bool:
        """A client frame is about to be handled; False once shutdown stopped taking frames.

        Shutdown waits for the frames already started before closing the store; frames that
        arrive while the sockets are closing are dropped, not handled against a closed store.
        """
        if not self.accepting_frames:
            return False
        self.frames_in_flight += 1
        self._idle.clear()
        return True

    def frame_finished(self) -> None:
        """A client frame's handling ended."""
        self.frames_in_flight -= 1
        if self.frames_in_flight == 0:
            self._idle.set()

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no frame is being handled; False if that took longer than `seconds`."""
        return await finished_within(self._idle.wait(), seconds)

    @property
    def connection_count(self) -> int:
        """Authenticated connections here."""
        return sum(len(c) for c in self.by_user.values())

    def all(self) -> list[Connection]:
        """Every connection."""
        return [c for conns in self.by_user.values() for c in conns]

    # Subscriptions.
    async def _subscribe(self, channel: str, targets: set[Connection]) -> None:
        if channel in self._handlers:
            pending = self._subscribing.get(channel)
            if pending is not None:  # another join's subscription is not live yet: wait for it
                await asyncio.shield(pending)
            return

        def handler(event: Event) -> None:
            for conn in list(targets):
                conn.deliver(event)

        self._handlers[channel] = handler
        done = asyncio.get_running_loop().create_future()
        self._subscribing[channel] = done
        try:
            await self.bus.subscribe(channel, handler)
        except BaseException:
            if self._handlers.get(channel) is handler:
                del self._handlers[channel]
            raise
        finally:
            del self._subscribing[channel]
            done.set_result(None)

    async def _unsubscribe(self, channel: str) -> None:
        handler = self._handlers.pop(channel, None)
        if handler is not None:
            await self.bus.unsubscribe(channel, handler)

    async def add(self, conn: Connection) -> None:
        """Register an authenticated connection and its user channel."""
        conn.fetch_events = self.fetch_events
        conns = self.by_user.setdefault(conn.user_id, set())
        conns.add(conn)
        self.metrics.connections.set(self.connection_count)
        await self._subscribe(user_channel(conn.user_id), conns)

    async def join(self, conn: Connection, conversation_id: Id, since_seq: int | None, ref: str | None) -> None:
        """Subscribe (buffering), snapshot live replies, replay what was missed, answer `joined`, flush."""
        assert self.source is not None, "joins need a replay source"
        cursor = conn.begin_join(conversation_id)
        conns = self.by_conv.setdefault(conversation_id, set())
        conns.add(conn)
        try:
            await self._subscribe(conversation_channel(conversation_id), conns)
            # The seq first, then the live replies: a reply stored in between is in neither, and its
            # `message_added` (seq > latest) comes from the replay or the buffer, never lost.
            last = await self.source.latest_seq(conversation_id)
            active = await self.source.active_streams(conversation_id)
            replayed_replies = set()
            if since_seq is not None:
                for event in await self.source.events_since(conversation_id, since_seq):
                    conn.send(event.payload)
                    if event.seq is not None:
                        last = max(last, event.seq)
                    if event.type == "message_added":
                        replayed_replies.add(event.msg)
            cursor.last_seq = last
            # A reply that finished after the snapshot was just replayed whole: it is not active.
            active = [snap for snap in active if snap["message_id"] not in replayed_replies]
            for snap in active:
                cursor.stream_index[snap["message_id"]] = snap["index"]
            joined: dict = {"conversation_id": conversation_id, "seq": last, "active_streams": active}
            if ref is not None:
                joined["ref"] = ref
            conn.send_frame("joined", joined)
        except BaseException:
            await self.leave(conn, conversation_id)
            raise
        conn.end_join(conversation_id, cursor)

    async def leave(self, conn: Connection, conversation_id: Id) -> None:
        """Unsubscribe the connection from a conversation."""
        conn.forget(conversation_id)
        conns = self.by_conv.get(conversation_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_conv[conversation_id]
                await self._unsubscribe(conversation_channel(conversation_id))

    async def remove(self, conn: Connection) -> None:
        """Forget a closed connection and everything it held."""
        for cid in list(conn.joined):
            await self.leave(conn, cid)
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]
                await self._unsubscribe(user_channel(conn.user_id))
        self.metrics.connections.set(self.connection_count)
        await conn.aclose()

    async def flush_all(self, seconds: float) -> None:
        """Let every connection write what it has queued (shutdown: the last chunks before 1001)."""
        conns = self.all()
        if conns:
            await asyncio.gather(*(c.flush(seconds) for c in conns))

    def channel_count(self) -> int:
        """Bus channels this process is subscribed to for connections (for leak tests)."""
        return len(self._handlers)
