"""One authenticated socket: its writer with a byte-bounded queue, and its joined conversations."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from chatd import protocol
from chatd.aio import cancel_and_wait, finished_within
from chatd.bus.events import Event
from chatd.connections.ordering import ConversationCursor
from chatd.metrics import Metrics
from chatd.models import Id

log = logging.getLogger(__name__)

#: How long an event that skips a seq waits for the missing ones before they are read from the
#: store (with several processes, two events of a conversation may arrive out of seq order).
GAP_WAIT_S = 0.2

#: (conversation_id, since_seq) → the stored changes with seq > since_seq, as events.
FetchEvents = Callable[[Id, int], Awaitable[list[Event]]]

_encoder = msgspec.json.Encoder()


class Socket(Protocol):
    """What a Connection needs from the WebSocket handler."""

    def write_message(self, message: bytes) -> Any:
        """Write one text frame; returns an awaitable that resolves once flushed."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket with a code."""


class Connection:
    """One authenticated socket: its joined conversations and its bounded outgoing queue."""

    def __init__(self, socket: Socket, user_id: Id, session_id: str, max_queue_bytes: int,
                 metrics: Metrics | None = None) -> None:
        self.socket = socket
        self.user_id = user_id
        self.session_id = session_id
        self.max_queue_bytes = max_queue_bytes
        self.metrics = metrics
        self.joined: dict[Id, ConversationCursor] = {}
        self.typing_in: set[Id] = set()
        self.queued_bytes = 0
        self.closed = False
        self.fetch_events: FetchEvents | None = None  # set by the registry: fills seq gaps from the store
        self._gap_fills: dict[Id, asyncio.TimerHandle | asyncio.Future] = {}
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{session_id}")

    # Writing.
    def send(self, payload: bytes) -> None:
        """Queue an encoded frame; a socket whose queue exceeds its byte budget is closed 1008."""
        if self.closed:
            return
        self.queued_bytes += len(payload)
        if self.queued_bytes > self.max_queue_bytes:
            if self.metrics is not None:
                self.metrics.slow_closed.inc()
            log.info("closing slow consumer %s (%d bytes queued)", self.session_id, self.queued_bytes)
            self.abort(protocol.CLOSE_ABUSE, "Client is not reading")
            return
        if self.metrics is not None:
            self.metrics.frames_out.inc()
        self._queue.put_nowait(payload)

    def send_frame(self, frame_type: str, data: Any, **top: Any) -> None:
        """Encode and queue a frame meant for this connection only (an answer, not a broadcast)."""
        self.send(_encoder.encode({"type": frame_type, **top, "data": data}))

    async def _write_loop(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                if payload is None:
                    return
                await self.socket.write_message(payload)
            except Exception:  # closed under us: stop writing, the handler cleans up
                self._drain()
                return
            finally:
                self._queue.task_done()
            self.queued_bytes -= len(payload)

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        self.queued_bytes = 0

    async def flush(self, seconds: float) -> bool:
        """Wait until every queued frame is written (at shutdown, before the close frame); False on timeout."""
        return await finished_within(self._queue.join(), seconds)

    def abort(self, code: int, reason: str) -> None:
        """Drop what is queued and close the socket."""
        self._drain()
        self.closed = True
        self._queue.put_nowait(None)
        try:
            self.socket.close(code, reason)
        except Exception:
            log.debug("close failed", exc_info=True)

    async def aclose(self) -> None:
        """Stop the writer (the socket is already closed)."""
        self.closed = True
        self._drain()
        for cid in list(self._gap_fills):
            self._cancel_fill(cid)
        await cancel_and_wait(self._writer)

    # Delivery.
    def deliver(self, event: Event) -> None:
        """Apply one bus event: order and deduplicate it by the conversation's cursor, then send."""
        cursor = self.joined.get(event.conv) if event.conv is not None else None
        if cursor is None:
            if event.type == "conversation_updated":  # the sidebar of a conversation not open here
                self.send(event.payload)
            return
        if event.exclude_user is not None and event.exclude_user == self.user_id:
            return
        self._send_all(event.conv, cursor, cursor.offer(event))

    def begin_join(self, conversation_id: Id) -> ConversationCursor:
        """Start buffering the conversation's live events while history is replayed."""
        cursor = ConversationCursor(hold_gaps=self.fetch_events is not None, buffering=True)
        self.joined[conversation_id] = cursor
        return cursor

    def end_join(self, conversation_id: Id, cursor: ConversationCursor) -> None:
        """Release the events buffered during the join, minus what the replay already sent."""
        self._send_all(conversation_id, cursor, cursor.end_buffering())

    def forget(self, conversation_id: Id) -> bool:
        """Drop a joined conversation's cursor (and its pending gap fill); whether it was joined."""
        self._cancel_fill(conversation_id)
        return self.joined.pop(conversation_id, None) is not None

    def _send_all(self, conversation_id: Id | None, cursor: ConversationCursor, out: list[Event]) -> None:
        for event in out:
            self.send(event.payload)
        if conversation_id is None:
            return
        if cursor.held and conversation_id not in self._gap_fills:
            self._gap_fills[conversation_id] = asyncio.get_running_loop().call_later(
                GAP_WAIT_S, self._start_fill, conversation_id, cursor)
        elif not cursor.held:
            self._cancel_fill(conversation_id)

    # Seq gaps (several processes publish one conversation's events: they may cross in flight).
    def _cancel_fill(self, conversation_id: Id) -> None:
        pending = self._gap_fills.pop(conversation_id, None)
        if pending is not None:
            pending.cancel()

    def _start_fill(self, conversation_id: Id, cursor: ConversationCursor) -> None:
        self._gap_fills[conversation_id] = asyncio.ensure_future(self._fill_gap(conversation_id, cursor))

    async def _fill_gap(self, conversation_id: Id, cursor: ConversationCursor) -> None:
        """The gap did not fill in time: read the missing changes from the store, then go on."""
        try:
            stored = await self.fetch_events(conversation_id, cursor.last_seq) if self.fetch_events else []
        except Exception:
            log.warning("could not fetch missed events of %s", conversation_id, exc_info=True)
            stored = []
        finally:
            self._gap_fills.pop(conversation_id, None)
        if self.closed or self.joined.get(conversation_id) is not cursor:
            return
        self._send_all(conversation_id, cursor, cursor.fill(stored))
