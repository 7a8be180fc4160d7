"""§6 resume: clients cut at hundreds of points during replies reassemble exactly the stored text."""
from __future__ import annotations

import asyncio
import os
import random
import string

import pytest

from chatd.testing import test_settings

SEED = int(os.environ.get("CHATD_TEST_SEED", "20240601"))
MIN_CUTS = 220


@pytest.fixture
def chatd_settings(tmp_path):
    return test_settings(tmp_path, providers={"demo": {"tokens_per_second": 1500, "echo_chunk": 4}},
                         coalesce_ms=0.0, rate_messages=10_000, max_frames_per_second=10_000)


class Reader:
    """A client that keeps cutting its connection and resuming with since_seq."""

    def __init__(self, chatd, token, cid, rng: random.Random, name: str) -> None:
        self.chatd, self.token, self.cid, self.rng, self.name = chatd, token, cid, rng, name
        self.last_seq = 0
        self.texts: dict = {}  # message id -> text assembled so far
        self.index: dict = {}  # message id -> last chunk index
        self.final: dict = {}  # message id -> content of message_added
        self.live_assembled: set = set()  # replies whose final text the reader assembled from chunks
        self.seen: list[tuple[str, int]] = []  # (type, seq) of seq-carrying conversation events
        self.cuts = 0
        self.mid_reply_cuts = 0
        self.mid_join_cuts = 0
        self.connections = 0
        self.trace: list = []
        self.changes: set = set()  # seqs of conversation changes (renames) received

    def streaming(self) -> bool:
        return any(m not in self.final for m in self.texts)

    def _on(self, f: dict, replay: bool, conn_seqs: list[int]) -> None:
        t, d = f["type"], f.get("data") or {}
        if "seq" in d or t == "joined":
            last = (d.get("conversation") or {}).get("last_message") or {}
            self.trace.append((self.connections, replay, t, d.get("seq"), last.get("seq"), self.last_seq))
        if "seq" in d and not (t == "conversation_updated" and (d["conversation"]["id"] != self.cid or replay)):
            # Order is checked for messages, and for updates once joined: an update that reached
            # the tab before the server handled its join (the sidebar of every tab) may precede
            # the replay of older seqs.
            conn_seqs.append(d["seq"])
        if t == "message_received":
            assert d["seq"] == d["message"]["seq"] > self.last_seq, (self.name, f, self.last_seq, self.trace[-8:])
            self.last_seq = d["seq"]
            self.seen.append((t, d["seq"]))
        elif t == "message_added":
            m = d["message"]
            mid = m["id"]
            assert d["seq"] == m["seq"] > self.last_seq, (self.name, f, self.last_seq)
            self.last_seq = d["seq"]
            self.seen.append((t, d["seq"]))
            prev = self.texts.get(mid, "")
            assert m["content"].startswith(prev), (self.name, mid, prev, m["content"])
            if not replay and mid in self.texts:
                # Every chunk of the reply reached this connection: the assembled text is exact.
                assert prev == m["content"], (self.name, mid, prev, m["content"])
                self.live_assembled.add(mid)
            self.final[mid] = m["content"]
            self.texts[mid] = m["content"]
        elif t == "conversation_updated":
            conv = d["conversation"]
            last = conv.get("last_message")
            # An update that only reflects a message carries that message's seq (the sidebar of
            # every tab, joined or not): it is not a change and must not move since_seq.
            if conv["id"] == self.cid and (last is None or last["seq"] < d["seq"]):
                if replay:
                    # Before `joined`, a change may come as the sidebar update of a tab that is not
                    # joined yet *and* in the replay: it is state (applying it twice is a no-op), and
                    # it must not move since_seq past messages still to be replayed.
                    self.changes.add(d["seq"])
                    return
                assert d["seq"] > self.last_seq, (self.name, d["seq"], self.last_seq)
                self.changes.add(d["seq"])
                self.seen.append((t, d["seq"]))
                self.last_seq = d["seq"]
        elif t == "stream_start":
            mid = d["message_id"]
            if mid in self.texts:  # already announced by joined.active_streams, no chunk yet
                assert self.texts[mid] == "" and self.index[mid] == -1, (self.name, f)
            self.texts[mid], self.index[mid] = "", -1
        elif t == "stream_content":
            mid = d["message_id"]
            assert mid in self.texts and mid not in self.final, (self.name, f)
            assert d["index"] == self.index[mid] + 1, (self.name, d, self.index[mid])
            self.index[mid] = d["index"]
            self.texts[mid] += d["content"]

    async def session(self, done: asyncio.Event) -> None:
        ws = await self.chatd.ws(self.token)
        self.connections += 1
        conn_seqs: list[int] = []
        try:
            if self.rng.random() < 0.08:  # cut in the middle of a join
                await ws.send({"type": "join_conversation", "data": {"conversation_id": self.cid,
                                                                     "since_seq": self.last_seq}})
                if self.rng.random() < 0.5:
                    await asyncio.sleep(self.rng.random() * 0.003)
                self.mid_join_cuts += 1
                self.cuts += 1
                return
            await ws.send({"type": "join_conversation", "data": {"conversation_id": self.cid,
                                                                 "since_seq": self.last_seq}})
            while True:
                f = await ws.recv(timeout=5)
                assert f is not None
                if f["type"] == "joined":
                    self.trace.append((self.connections, "joined", f["data"]["seq"], self.last_seq))
                    d = f["data"]
                    assert d["seq"] >= self.last_seq
                    self.last_seq = d["seq"]
                    for s in d["active_streams"]:
                        mid = s["message_id"]
                        prev = self.texts.get(mid, "")
                        assert mid not in self.final
                        assert s["content"].startswith(prev), (self.name, prev, s)
                        assert s["index"] >= self.index.get(mid, -1)
                        self.texts[mid], self.index[mid] = s["content"], s["index"]
                    break
                self._on(f, replay=True, conn_seqs=conn_seqs)
            # Mostly short sessions (cut after a few frames); some long ones that see replies end live.
            budget = self.rng.randint(0, 14) if self.rng.random() < 0.85 else self.rng.randint(100, 600)
            while budget > 0 or done.is_set():
                try:
                    f = await ws.recv(timeout=0.5 if not done.is_set() else 0.3)
                except TimeoutError:
                    if done.is_set():
                        return
                    break
                assert f is not None
                self._on(f, replay=False, conn_seqs=conn_seqs)
                budget -= 1
            self.cuts += 1
            if self.streaming():
                self.mid_reply_cuts += 1
        finally:
            ws.close()
            # Within one connection, events of the conversation arrive in seq order.
            assert conn_seqs == sorted(conn_seqs), (self.name, conn_seqs)

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.session(done)
        await self.session(done)  # a final catch-up connection, read until quiet


def words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 9))) + rng.choice(["", ",", "."])
                    for _ in range(n))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_resume_at_hundreds_of_cut_points(chatd):
    rng = random.Random(SEED)
    user, token = await chatd.register("alice")
    conv = await chatd.conversation(token, title="resume")
    cid = conv["id"]
    driver = await chatd.ws(token)
    await driver.join(cid)
    readers = [Reader(chatd, token, cid, random.Random(SEED + i), f"r{i}") for i in range(4)]
    done = asyncio.Event()
    tasks = [asyncio.create_task(r.run(done)) for r in readers]
    expected: dict = {}  # user message id -> echo text
    renames = 0
    try:
        for i in range(40):
            text = f"[{i}] " + words(rng, rng.randint(150, 260))
            await driver.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo " + text,
                                                                "message_type": "user"}})
            ack = await driver.expect("ack", timeout=10)
            expected[ack["data"]["message_id"]] = text
            if rng.random() < 0.3:
                status, _, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", token,
                                                   body={"title": f"title {i}"})
                assert status == 200
                renames += 1
            # Keep at most two replies streaming at once.
            if i % 2 == 1:
                await driver.collect_until("message_added", timeout=20)
                await driver.collect_until("message_added", timeout=20)
            if sum(r.mid_reply_cuts for r in readers) >= MIN_CUTS and i >= 11 and i % 2 == 1:
                break
            for t in tasks:
                if t.done():
                    t.result()
        else:
            pass
        await asyncio.sleep(0.3)
        done.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        done.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages?limit=1000", token)
    assert status == 200
    stored = body["messages"]
    replies = {m["reply_to"]: m for m in stored if m["message_type"] == "assistant"}
    assert set(replies) == set(expected)
    for reply_to, text in expected.items():
        assert replies[reply_to]["status"] == "complete"
        assert replies[reply_to]["content"] == text
    last_seq = len(stored) + renames  # seq grows by one per change, with no gaps
    message_seqs = {m["seq"] for m in stored}
    change_seqs = set(range(1, last_seq + 1)) - message_seqs
    assert len(change_seqs) == renames
    total_cuts = sum(r.cuts for r in readers)
    for r in readers:
        # Nothing lost, nothing twice: every stored change reached the reader exactly once.
        msg_events = sorted(s for t, s in r.seen if t in ("message_received", "message_added"))
        assert msg_events == sorted(message_seqs), r.name
        # Changes are state: each reached the reader (possibly twice before `joined`, once after).
        assert r.changes == change_seqs, (r.name, r.changes, change_seqs, r.trace)
        after_join = [s for t, s in r.seen if t == "conversation_updated"]
        assert len(after_join) == len(set(after_join)), r.name
        for m in replies.values():
            assert r.final[m["id"]] == m["content"], r.name
    live = sum(len(r.live_assembled) for r in readers)
    mid_reply = sum(r.mid_reply_cuts for r in readers)
    print(f"\nresume: {len(expected)} replies, {total_cuts} cuts ({mid_reply} mid-reply, "
          f"{sum(r.mid_join_cuts for r in readers)} mid-join), {live} replies assembled from live chunks, "
          f"{renames} renames")
    assert total_cuts >= MIN_CUTS
    assert mid_reply >= 200
    assert live >= len(expected)  # on average each reply was assembled live (snapshot + chunks) by one reader
