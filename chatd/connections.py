"""This process's sockets: user → connections, conversation → connections; writes with backpressure."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from chatd import protocol
from chatd.bus import Bus, conversation_channel, user_channel
from chatd.metrics import Metrics

log = logging.getLogger(__name__)


class Socket(Protocol):
    """What a Connection needs from the WebSocket handler."""

    def write_message(self, message: str) -> Any:
        """Write one text frame; returns an awaitable that resolves once flushed."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket with a code."""


@dataclass
class JoinState:
    """Per-connection view of one joined conversation: for ordering and deduplication."""

    last_seq: int = 0
    stream_index: dict[Any, int] = field(default_factory=dict)
    buffer: list[dict] | None = None  # events held while a join replays history


class Connection:
    """One authenticated socket: its joined conversations and its bounded outgoing queue."""

    def __init__(self, socket: Socket, user_id: Any, session_id: str, max_queue_bytes: int,
                 metrics: Metrics | None = None) -> None:
        self.socket = socket
        self.user_id = user_id
        self.session_id = session_id
        self.max_queue_bytes = max_queue_bytes
        self.metrics = metrics
        self.joined: dict[Any, JoinState] = {}
        self.typing_in: set[Any] = set()
        self.queued_bytes = 0
        self.closed = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{session_id}")

    # Writing.
    def send(self, frame: dict) -> None:
        """Queue a frame; a socket whose queue exceeds its byte budget is closed 1008."""
        if self.closed:
            return
        text = protocol.encode(frame)
        self.queued_bytes += len(text)
        if self.queued_bytes > self.max_queue_bytes:
            if self.metrics is not None:
                self.metrics.slow_closed.inc()
            log.info("closing slow consumer %s (%d bytes queued)", self.session_id, self.queued_bytes)
            self.abort(protocol.CLOSE_ABUSE, "Client is not reading")
            return
        if self.metrics is not None:
            self.metrics.frames_out.inc()
        self._queue.put_nowait(text)

    async def _write_loop(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None:
                return
            try:
                await self.socket.write_message(text)
            except Exception:  # closed under us: stop writing, the handler cleans up
                self._drain()
                return
            self.queued_bytes -= len(text)

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self.queued_bytes = 0

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
        self._writer.cancel()
        try:
            await self._writer
        except (asyncio.CancelledError, Exception):
            pass

    # Delivery.
    def deliver(self, env: dict) -> None:
        """Apply one bus event: buffer during a join, drop duplicates, filter, send."""
        cid = env.get("conv")
        state = self.joined.get(cid)
        if env["frame"]["type"] == "conversation_updated":
            if state is not None:
                if state.buffer is not None:  # also the updates that reflect a message: seq order
                    state.buffer.append(env)
                    return
                if not self._conversation_update_in_order(state, env):
                    return
            self.send(env["frame"])
            return
        if state is None:
            return
        if state.buffer is not None:
            state.buffer.append(env)
            return
        self._apply(state, env)

    def _apply(self, state: JoinState, env: dict) -> None:
        if env.get("exclude_user") is not None and env["exclude_user"] == self.user_id:
            return
        seq = env.get("seq")
        if seq is not None:
            if seq <= state.last_seq:
                return
            state.last_seq = seq
        index = env.get("index")
        msg = env.get("msg")
        ftype = env["frame"]["type"]
        if ftype == "stream_start":
            if state.stream_index.get(msg, -1) >= 0:
                return  # `joined.active_streams` already gave its text: a start now would reset it
            state.stream_index[msg] = -1
        elif index is not None:
            # Only chunks of a stream this connection knows (from `joined.active_streams` or its
            # `stream_start`), continuing at index + 1: a reply that ended while the connection was
            # joining reaches it as `message_added` only, never as a fragment without a start.
            if msg not in state.stream_index or index <= state.stream_index[msg]:
                return
            state.stream_index[msg] = index
        elif ftype in ("stream_complete", "stream_error"):
            if msg not in state.stream_index:
                return
            state.stream_index.pop(msg, None)
        self.send(env["frame"])

    @staticmethod
    def _conversation_update_in_order(state: JoinState, env: dict) -> bool:
        """Whether a conversation_updated may go out on a joined connection without breaking seq order.

        A change is new once (seq > last). An update that only reflects a message carries that
        message's seq: it goes out unless a later change already went out (then it is stale, and a
        newer update of the sidebar follows or went out already).
        """
        seq = env.get("seq")
        if seq is None:
            return True
        if env.get("change"):
            if seq <= state.last_seq:
                return False
            state.last_seq = seq
            return True
        return seq >= state.last_seq

    def begin_join(self, conversation_id: Any) -> JoinState:
        """Start buffering the conversation's live events while history is replayed."""
        state = JoinState(buffer=[])
        self.joined[conversation_id] = state
        return state

    def end_join(self, state: JoinState) -> None:
        """Release the events buffered during the join, minus what the replay already sent."""
        buffered, state.buffer = state.buffer or [], None
        for env in buffered:
            if env["frame"]["type"] == "conversation_updated":
                if self._conversation_update_in_order(state, env):
                    self.send(env["frame"])
            else:
                self._apply(state, env)


class ConnectionRegistry:
    """Routes bus events to this process's connections; subscribes each channel once."""

    def __init__(self, bus: Bus, metrics: Metrics) -> None:
        self.bus = bus
        self.metrics = metrics
        self.by_user: dict[Any, set[Connection]] = {}
        self.by_conv: dict[Any, set[Connection]] = {}
        self._handlers: dict[str, Callable[[dict], None]] = {}
        self.frames_in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def frame_started(self) -> None:
        """A client frame is being handled (shutdown waits for it before closing the store)."""
        self.frames_in_flight += 1
        self._idle.clear()

    def frame_finished(self) -> None:
        """A client frame's handling ended."""
        self.frames_in_flight -= 1
        if self.frames_in_flight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no frame is being handled; False if that took longer than `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    @property
    def connection_count(self) -> int:
        """Authenticated connections here."""
        return sum(len(c) for c in self.by_user.values())

    def all(self) -> list[Connection]:
        """Every connection."""
        return [c for conns in self.by_user.values() for c in conns]

    async def _subscribe(self, channel: str, targets: set[Connection]) -> None:
        if channel in self._handlers:
            return

        def handler(env: dict) -> None:
            for conn in list(targets):
                conn.deliver(env)

        self._handlers[channel] = handler
        await self.bus.subscribe(channel, handler)

    async def _unsubscribe(self, channel: str) -> None:
        handler = self._handlers.pop(channel, None)
        if handler is not None:
            await self.bus.unsubscribe(channel, handler)

    async def add(self, conn: Connection) -> None:
        """Register an authenticated connection and its user channel."""
        conns = self.by_user.setdefault(conn.user_id, set())
        conns.add(conn)
        self.metrics.connections.set(self.connection_count)
        await self._subscribe(user_channel(conn.user_id), conns)

    async def join(self, conn: Connection, conversation_id: Any) -> JoinState:
        """Subscribe the connection to a conversation (buffering until `end_join`)."""
        state = conn.begin_join(conversation_id)
        conns = self.by_conv.setdefault(conversation_id, set())
        conns.add(conn)
        await self._subscribe(conversation_channel(conversation_id), conns)
        return state

    async def leave(self, conn: Connection, conversation_id: Any) -> None:
        """Unsubscribe the connection from a conversation."""
        conn.joined.pop(conversation_id, None)
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

    def channel_count(self) -> int:
        """Bus channels this process is subscribed to for connections (for leak tests)."""
        return len(self._handlers)


class FrameRate:
    """Token bucket of frames per second for one connection."""

    def __init__(self, per_second: int) -> None:
        self.rate = float(per_second)
        self.tokens = float(per_second)
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        """Take a token; False when the client sends faster than the limit."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
