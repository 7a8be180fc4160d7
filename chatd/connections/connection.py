"""This process's sockets: user → connections, conversation → connections; writes with backpressure."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from chatd import protocol
from chatd.aio import cancel_and_wait
from chatd.bus import Bus, conversation_channel, user_channel
from chatd.metrics import Metrics

log = logging.getLogger(__name__)

#: How long an event that skips a seq waits for the missing ones before they are read from the
#: store (with several processes, two events of a conversation may arrive out of seq order).
GAP_WAIT_S = 0.2

#: (conversation_id, since_seq) → the stored events with seq > since_seq (`ChatService.events_since`).
FetchEvents = Callable[[Any, int], Awaitable[list]]


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
    held: dict[int, list[dict]] = field(default_factory=dict)  # events past a seq gap, by seq
    gap_timer: Any = None  # the pending gap fill (a TimerHandle or a Task)


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
        self.fetch_events: FetchEvents | None = None  # set by the registry: fills seq gaps from the store
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
        await cancel_and_wait(self._writer)

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
                self._deliver_update(state, env)
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
            if seq > state.last_seq + 1 and self.fetch_events is not None:
                self._hold(state, env)
                return
            state.last_seq = seq
        self._send_event(state, env)
        if seq is not None and state.held:
            self._release_held(state)

    def _send_event(self, state: JoinState, env: dict) -> None:
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

    # Seq gaps (several processes publish one conversation's events: they may cross in flight).
    def _hold(self, state: JoinState, env: dict) -> None:
        """Keep an event that skips a seq until the gap fills, or fetch the gap from the store."""
        state.held.setdefault(env["seq"], []).append(env)
        if state.gap_timer is None:
            cid = env.get("conv")
            state.gap_timer = asyncio.get_running_loop().call_later(GAP_WAIT_S, self._start_fill, cid, state)

    def _deliver_update(self, state: JoinState, env: dict) -> None:
        """A conversation_updated on a joined connection: in seq order with the conversation's events."""
        seq = env.get("seq")
        if seq is not None and self.fetch_events is not None and (
                seq > state.last_seq + 1 if env.get("change") else seq > state.last_seq):
            self._hold(state, env)
            return
        if self._conversation_update_in_order(state, env):
            self.send(env["frame"])
            if state.held:
                self._release_held(state)

    @staticmethod
    def _advances(env: dict) -> bool:
        """Whether the event is a stored change of its own (not an update reflecting a message)."""
        return env["frame"]["type"] != "conversation_updated" or bool(env.get("change"))

    def _release_held(self, state: JoinState) -> None:
        """Send the held events that became contiguous (and drop those now stale)."""
        while state.held:
            low = min(state.held)
            envs = state.held[low]
            first = [e for e in envs if self._advances(e)]
            if low > state.last_seq + (1 if first else 0):
                return
            del state.held[low]
            for env in first + [e for e in envs if not self._advances(e)]:
                self._apply_released(state, env)
        if state.gap_timer is not None:
            state.gap_timer.cancel()
            state.gap_timer = None

    def _apply_released(self, state: JoinState, env: dict) -> None:
        seq = env["seq"]
        if env["frame"]["type"] == "conversation_updated":
            if self._conversation_update_in_order(state, env):
                self.send(env["frame"])
            return
        if seq <= state.last_seq:
            return
        state.last_seq = seq
        self._send_event(state, env)

    def _start_fill(self, conversation_id: Any, state: JoinState) -> None:
        state.gap_timer = asyncio.ensure_future(self._fill_gap(conversation_id, state))

    async def _fill_gap(self, conversation_id: Any, state: JoinState) -> None:
        """The gap did not fill in time: read the missing changes from the store, then go on."""
        try:
            events = await self.fetch_events(conversation_id, state.last_seq) if self.fetch_events else []
        except Exception:
            log.warning("could not fetch missed events of %s", conversation_id, exc_info=True)
            events = []
        finally:
            state.gap_timer = None
        if self.closed or self.joined.get(conversation_id) is not state:
            return
        top = max(state.held) if state.held else state.last_seq
        for event in events:
            if state.last_seq < event.seq <= top:
                state.last_seq = event.seq
                self.send({"type": event.type, "data": event.data})
        self._release_held(state)
        while state.held:  # what is still held lies past a gap the store does not have: send it anyway
            low = min(state.held)
            log.warning("seq gap before %d of %s not in the store; skipping it", low, conversation_id)
            state.last_seq = max(state.last_seq, low - 1)
            for env in state.held.pop(low):
                self._apply_released(state, env)
            self._release_held(state)

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
                self._deliver_update(state, env)
            else:
                self._apply(state, env)


class ConnectionRegistry:
    """Routes bus events to this process's connections; subscribes each channel once."""

    def __init__(self, bus: Bus, metrics: Metrics, fetch_events: FetchEvents | None = None) -> None:
        self.bus = bus
        self.metrics = metrics
        self.fetch_events = fetch_events
        self._subscribing: dict[str, asyncio.Future] = {}
        self.by_user: dict[Any, set[Connection]] = {}
        self.by_conv: dict[Any, set[Connection]] = {}
        self._handlers: dict[str, Callable[[dict], None]] = {}
        self.frames_in_flight = 0
        self.accepting_frames = True
        self._idle = asyncio.Event()
        self._idle.set()

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
            pending = self._subscribing.get(channel)
            if pending is not None:  # another join's subscription is not live yet: wait for it
                await asyncio.shield(pending)
            return

        def handler(env: dict) -> None:
            for conn in list(targets):
                conn.deliver(env)

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

    async def join(self, conn: Connection, conversation_id: Any) -> JoinState:
        """Subscribe the connection to a conversation (buffering until `end_join`)."""
        state = conn.begin_join(conversation_id)
        conns = self.by_conv.setdefault(conversation_id, set())
        conns.add(conn)
        await self._subscribe(conversation_channel(conversation_id), conns)
        return state

    async def leave(self, conn: Connection, conversation_id: Any) -> None:
        """Unsubscribe the connection from a conversation."""
        state = conn.joined.pop(conversation_id, None)
        if state is not None and state.gap_timer is not None:
            state.gap_timer.cancel()
            state.gap_timer = None
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
