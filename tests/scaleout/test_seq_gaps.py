"""Connections hold an event that skips a seq until the gap fills, or read the gap from the store."""
from __future__ import annotations

import asyncio
import json

import pytest

from chatd.bus.events import Event
from chatd.connections import GAP_WAIT_S, Connection, ConversationCursor

pytestmark = pytest.mark.asyncio


class FakeSocket:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def write_message(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def close(self, code=None, reason=None) -> None:
        pass


def msg_env(cid, seq, ftype="message_received"):
    return Event.frame(ftype, {"message": {"id": 100 + seq, "seq": seq}, "seq": seq}, conv=cid, seq=seq)


def update_env(cid, seq, change=False):
    return Event.frame("conversation_updated", {"conversation": {"id": cid}, "seq": seq}, conv=cid, seq=seq,
                       change=change)


async def _conn(fetch=None, last_seq=4):
    sock = FakeSocket()
    conn = Connection(sock, user_id=1, session_id="s", max_queue_bytes=1 << 20)
    conn.fetch_events = fetch
    state = ConversationCursor(last_seq=last_seq, hold_gaps=fetch is not None)
    conn.joined[9] = state
    return conn, sock, state


def seqs(sock):
    return [(f["type"], f["data"].get("seq")) for f in sock.frames]


async def _flush():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_out_of_order_events_are_reordered_without_a_fetch():
    calls = []

    async def fetch(cid, since):
        calls.append((cid, since))
        return []

    conn, sock, state = await _conn(fetch)
    try:
        conn.deliver(msg_env(9, 6))
        conn.deliver(update_env(9, 6))  # the sidebar update of seq 6 waits with it
        conn.deliver(Event.frame("typing_indicator", {"user_id": 2}, conv=9))  # no seq: never held
        await _flush()
        assert seqs(sock) == [("typing_indicator", None)]
        conn.deliver(msg_env(9, 5))
        await _flush()
        assert seqs(sock)[1:] == [("message_received", 5), ("message_received", 6), ("conversation_updated", 6)]
        conn.deliver(msg_env(9, 6))  # a duplicate: dropped
        await asyncio.sleep(GAP_WAIT_S + 0.1)
        assert calls == [] and len(sock.frames) == 4 and state.held == {} and not conn._gap_fills
    finally:
        await conn.aclose()


async def test_a_gap_that_does_not_fill_is_read_from_the_store_once():
    calls = []

    async def fetch(cid, since):
        calls.append((cid, since))
        return [msg_env(cid, s) for s in range(since + 1, 9)]  # the store has 5..8; 8 has not arrived live yet

    conn, sock, state = await _conn(fetch)
    try:
        conn.deliver(msg_env(9, 7))
        conn.deliver(update_env(9, 7, change=False))
        await asyncio.sleep(GAP_WAIT_S / 2)
        assert sock.frames == []
        await asyncio.sleep(GAP_WAIT_S)
        assert calls == [(9, 4)]
        assert seqs(sock) == [("message_received", 5), ("message_received", 6), ("message_received", 7),
                              ("conversation_updated", 7)]
        conn.deliver(msg_env(9, 8))  # live, after the fill: once
        conn.deliver(msg_env(9, 7))
        await _flush()
        assert [s for _, s in seqs(sock)] == [5, 6, 7, 7, 8]
        assert state.last_seq == 8 and not state.held
    finally:
        await conn.aclose()


async def test_a_gap_the_store_does_not_have_is_skipped_not_held_forever():
    async def fetch(cid, since):
        return []

    conn, sock, state = await _conn(fetch)
    try:
        conn.deliver(msg_env(9, 6))
        conn.deliver(update_env(9, 7, change=True))
        await asyncio.sleep(GAP_WAIT_S + 0.15)
        assert seqs(sock) == [("message_received", 6), ("conversation_updated", 7)]
        assert state.last_seq == 7
    finally:
        await conn.aclose()


async def test_without_a_fetcher_events_pass_as_before():
    conn, sock, state = await _conn(None)
    try:
        conn.deliver(msg_env(9, 6))
        conn.deliver(msg_env(9, 5))
        await _flush()
        assert seqs(sock) == [("message_received", 6)]
    finally:
        await conn.aclose()
