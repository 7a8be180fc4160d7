"""What one connection has seen of one conversation, and which events may go out next.

A pure cursor (no sockets, no timers, no I/O), so the ordering rules of PROTOCOL.md §6 can be
tested alone:

- stored changes go out in `seq` order, each once; with several processes two events of one
  conversation may cross in flight, so an event that skips a seq is held until the gap fills
  (or the connection reads the gap from the store and calls `fill`);
- the chunks of a stream go out in `index` order, each once, and only for a stream the
  connection knows (from its `stream_start` or from `joined.active_streams`);
- while a join replays history, live events are buffered and released after the replay.
"""
from __future__ import annotations

import logging

from chatd.bus.events import Event
from chatd.models import Id

log = logging.getLogger(__name__)


class ConversationCursor:
    """The ordering state of one joined conversation on one connection."""

    __slots__ = ("last_seq", "stream_index", "buffer", "held", "hold_gaps")

    def __init__(self, last_seq: int = 0, hold_gaps: bool = True, buffering: bool = False) -> None:
        self.last_seq = last_seq
        self.stream_index: dict[Id, int] = {}  # stream → last chunk index sent (-1: started, no chunk yet)
        self.buffer: list[Event] | None = [] if buffering else None  # live events held during a join
        self.held: dict[int, list[Event]] = {}  # events past a seq gap, by seq
        self.hold_gaps = hold_gaps  # False: nothing can fill a gap (no store to read), so never hold

    def offer(self, event: Event) -> list[Event]:
        """Take one live event of the conversation; the events to send now, in order."""
        if self.buffer is not None:
            self.buffer.append(event)
            return []
        out: list[Event] = []
        self._take(event, out)
        return out

    def end_buffering(self) -> list[Event]:
        """The replay is done: the buffered events that are still new, in order."""
        buffered, self.buffer = self.buffer or [], None
        out: list[Event] = []
        for event in buffered:
            self._take(event, out)
        return out

    def fill(self, stored: list[Event]) -> list[Event]:
        """The store's changes after `last_seq` (read because a gap did not fill); what to send now.

        What the store has up to the highest held seq goes out, then the held events; a gap the
        store does not have either is skipped rather than held for ever.
        """
        out: list[Event] = []
        top = max(self.held) if self.held else self.last_seq
        for event in stored:
            if event.seq is not None and self.last_seq < event.seq <= top:
                self.last_seq = event.seq
                out.append(event)
        self._release_held(out)
        while self.held:
            low = min(self.held)
            log.warning("seq gap before %d not in the store; skipping it", low)
            self.last_seq = max(self.last_seq, low - 1)
            for event in self.held.pop(low):
                self._take_released(event, out)
            self._release_held(out)
        return out

    # The rules.
    def _take(self, event: Event, out: list[Event]) -> None:
        if event.type == "conversation_updated":
            self._take_update(event, out)
            return
        seq = event.seq
        if seq is not None:
            if seq <= self.last_seq:
                return
            if seq > self.last_seq + 1 and self.hold_gaps:
                self.held.setdefault(seq, []).append(event)
                return
            self.last_seq = seq
        self._take_stream(event, out)
        if seq is not None and self.held:
            self._release_held(out)

    def _take_update(self, event: Event, out: list[Event]) -> None:
        """A conversation_updated: in seq order with the conversation's other events."""
        seq = event.seq
        if seq is not None and self.hold_gaps and (
                seq > self.last_seq + 1 if event.change else seq > self.last_seq):
            self.held.setdefault(seq, []).append(event)
            return
        if self._update_in_order(event):
            out.append(event)
            if self.held:
                self._release_held(out)

    def _update_in_order(self, event: Event) -> bool:
        """Whether a conversation_updated may go out without breaking seq order.

        A change is new once (seq > last). An update that only reflects a message carries that
        message's seq: it goes out unless a later change already went out (then it is stale, and a
        newer update of the sidebar follows or went out already).
        """
        seq = event.seq
        if seq is None:
            return True
        if event.change:
            if seq <= self.last_seq:
                return False
            self.last_seq = seq
            return True
        return seq >= self.last_seq

    def _take_stream(self, event: Event, out: list[Event]) -> None:
        msg, ftype = event.msg, event.type
        if ftype == "stream_start":
            if msg is None or self.stream_index.get(msg, -1) >= 0:
                return  # `joined.active_streams` already gave its text: a start now would reset it
            self.stream_index[msg] = -1
        elif event.index is not None:
            # Only chunks of a stream this connection knows (from `joined.active_streams` or its
            # `stream_start`), continuing at index + 1: a reply that ended while the connection was
            # joining reaches it as `message_added` only, never as a fragment without a start.
            if msg is None or msg not in self.stream_index or event.index <= self.stream_index[msg]:
                return
            self.stream_index[msg] = event.index
        elif ftype in ("stream_complete", "stream_error"):
            if msg not in self.stream_index:
                return
            self.stream_index.pop(msg, None)
        out.append(event)

    def _release_held(self, out: list[Event]) -> None:
        """Send the held events that became contiguous (and drop those now stale)."""
        while self.held:
            low = min(self.held)
            held = self.held[low]
            first = [e for e in held if e.advances]
            if low > self.last_seq + (1 if first else 0):
                return
            del self.held[low]
            for event in first + [e for e in held if not e.advances]:
                self._take_released(event, out)

    def _take_released(self, event: Event, out: list[Event]) -> None:
        if event.type == "conversation_updated":
            if self._update_in_order(event):
                out.append(event)
            return
        assert event.seq is not None
        if event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        self._take_stream(event, out)
