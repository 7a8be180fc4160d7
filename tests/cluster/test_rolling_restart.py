"""A rolling restart of three chatd processes behind nginx loses nothing.

Each process in turn gets SIGTERM while it streams a reply to a client connected through nginx:
the socket closes with 1001 at once, the client reconnects through nginx to another process,
rejoins with `since_seq` and receives the rest of the still-running reply live (shared in-flight
state), and the text it assembled equals the stored one, no chunk twice, status `complete`.
Meanwhile 20 clients chat throughout, reconnecting and resending (same `client_msg_id`) whenever
their socket or a send fails: every message is stored once and answered once, in full.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import tornado.httpclient
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from chatd.testing import WSClient, ahttp, ws_connect

from .cluster import running_cluster
from .helpers import connect_through_nginx, user_with_conversation

pytestmark = [pytest.mark.rolling, pytest.mark.redis, pytest.mark.slow, pytest.mark.usefixtures("ws_clients"),
              pytest.mark.asyncio]

CHATTERS = 20
LONG = " ".join(f"r{i:03d}" for i in range(700))  # 2,799 characters: about 3.5 s at 200 tokens/s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster whose limits leave room for 20 busy users."""
    with running_cluster(tmp_path_factory.mktemp("rolling"), CHATD_RATE_MESSAGES="100000",
                         CHATD_RATE_AUTH_ATTEMPTS="10000") as c:
        yield c


@dataclass
class Follow:
    """A reply being followed across reconnects."""

    text: str = ""
    last_index: int = -1
    duplicated: int = 0
    gaps: int = 0
    reconnects: int = 0
    ended_while_away: bool = False  # rejoined after the reply's last chunk: its end comes as message_added
    trace: list = field(default_factory=list)  # what happened, for a failure's message


class Chatter:
    """A user of the page: sends, follows each reply, and on any failure reconnects and resends."""

    def __init__(self, cluster, name: str, token: str, conversation_id) -> None:
        self.cluster = cluster
        self.name = name
        self.token = token
        self.cid = conversation_id
        self.ws: WSClient | None = None
        self.seq = 0
        self.sent: list[str] = []  # client_msg_ids acked
        self.replies: list[tuple[str, Follow, dict]] = []  # (client_msg_id, what was followed, message_added)
        self.failed_attempts = 0
        self.reconnects = 0
        self.connect_failures: list[str] = []

    async def connect(self) -> None:
        """A socket through nginx, joined with since_seq (retried until a process takes it)."""
        while True:
            try:
                # As the page does: give up on an attempt that hangs and try again (a connection
                # nginx handed to a process in the instant it stopped listening may never be answered).
                request = tornado.httpclient.HTTPRequest(self.cluster.nginx.ws_url, connect_timeout=2,
                                                         request_timeout=2)
                ws = await ws_connect(request, self.token)  # type: ignore[arg-type]
                await ws.send({"type": "join_conversation", "data": {"conversation_id": self.cid,
                                                                      "since_seq": self.seq}})
                self.ws = ws
                return
            except Exception as e:
                self.reconnects += 1
                self.connect_failures.append(f"{type(e).__name__} {getattr(e, 'code', '')} {e}"[:80])
                await asyncio.sleep(0.1)

    def _note_seq(self, frame: dict) -> None:
        data = frame.get("data") or {}
        record = data.get("message") or data.get("conversation") or {}
        if isinstance(record.get("seq"), int):
            self.seq = max(self.seq, record["seq"])

    async def exchange(self, cmid: str, content: str, follow: Follow | None = None) -> tuple[Follow, dict]:
        """Send (resending after failures) and follow the reply to its message_added."""
        follow = follow or Follow()
        message_id = None
        while True:
            if self.ws is None:
                await self.connect()
                follow.reconnects += 1
            ws = self.ws
            assert ws is not None
            try:
                rejoining = follow.reconnects > 0  # until `joined`, frames are the replay of what was missed
                if message_id is None:
                    await ws.send({"type": "send_message", "ref": cmid, "data": {
                        "conversation_id": self.cid, "content": content, "message_type": "user",
                        "client_msg_id": cmid}})
                while True:
                    frame = await ws.recv(timeout=30)
                    if frame is None:
                        raise ConnectionError("closed")
                    self._note_seq(frame)
                    kind, data = frame["type"], frame.get("data") or {}
                    if kind == "error" and data.get("ref") == cmid:
                        self.failed_attempts += 1  # refused while a process stops: resend it
                        await asyncio.sleep(0.2)
                        break
                    if kind == "ack" and data.get("ref") == cmid:
                        message_id = data["message_id"]
                        if cmid not in self.sent:
                            self.sent.append(cmid)
                    elif kind == "joined":
                        rejoining = False
                        for stream in data["active_streams"]:  # the reply so far, from the shared state
                            follow.trace.append(("joined", follow.last_index, stream["index"], len(stream["content"])))
                            follow.text, follow.last_index = stream["content"], stream["index"]
                        if message_id is not None and not data["active_streams"]:
                            follow.ended_while_away = True
                    elif kind == "stream_content":
                        follow.trace.append(data["index"])
                        if data["index"] <= follow.last_index:
                            follow.duplicated += 1
                            continue
                        if data["index"] != follow.last_index + 1:
                            follow.gaps += 1
                        follow.text += data["content"]
                        follow.last_index = data["index"]
                    elif kind == "message_added" and message_id is not None \
                            and data["message"].get("reply_to") == message_id:
                        follow.ended_while_away = follow.ended_while_away or rejoining
                        return follow, data["message"]
            except (ConnectionError, TimeoutError, OSError, WebSocketClosedError, StreamClosedError) as e:
                follow.trace.append(("closed", type(e).__name__, time.monotonic()))
                if self.ws is not None:
                    self.ws.close()
                self.ws = None

    async def run(self, stop: asyncio.Event) -> None:
        """Chat until told to stop."""
        i = 0
        while not stop.is_set():
            cmid = f"{self.name}-{i}"
            follow, added = await self.exchange(cmid, f"/echo {self.name} says {i} " + LONG[:600])
            self.replies.append((cmid, follow, added))
            i += 1
            await asyncio.sleep(0.2)


async def _user(cluster, name: str) -> tuple[str, object]:
    _, token, conv = await user_with_conversation(cluster, name)
    return token, conv["id"]


@dataclass
class Handover:
    """What the client of the stopped process saw."""

    close_code: int | None
    close_after_s: float
    follow: Follow
    added: dict = field(default_factory=dict)


async def _restart_while_streaming(cluster, server) -> Handover:
    """SIGTERM `server` while it streams a long reply to a client; follow the reply elsewhere; restart it."""
    token, cid = await _user(cluster, f"watch{server.port}")
    while True:  # a socket on the process about to stop: its replies run there
        ws, port = await connect_through_nginx(cluster, token)
        if port == server.port:
            break
        ws.close()
    watcher = Chatter(cluster, f"w{server.port}", token, cid)
    watcher.ws = ws
    await ws.send({"type": "join_conversation", "data": {"conversation_id": cid}})
    await ws.expect("joined", timeout=10)
    await ws.send({"type": "send_message", "ref": "long", "data": {
        "conversation_id": cid, "content": "/echo " + LONG, "message_type": "user", "client_msg_id": "long"}})
    ack = await ws.expect("ack", timeout=10)
    follow = Follow()
    for _ in range(40):  # about a fifth of the reply streamed before the stop
        frame = await ws.expect("stream_content", timeout=10)
        follow.text += frame["data"]["content"]
        follow.last_index = frame["data"]["index"]
    stopped_at = time.monotonic()
    server.term()
    code, _ = await ws.closed(timeout=5)
    close_after = time.monotonic() - stopped_at
    for frame in ws._unread:  # chunks that arrived before the close frame
        if frame["type"] == "stream_content" and frame["data"]["index"] == follow.last_index + 1:
            follow.text += frame["data"]["content"]
            follow.last_index = frame["data"]["index"]
    watcher.ws = None
    watcher.sent.append("long")
    # Reconnect through nginx (another process), rejoin, follow the rest of the same reply.
    follow, added = await _follow_existing(watcher, ack["data"]["message_id"], follow)
    assert await asyncio.to_thread(server.wait, 40) == 0
    await asyncio.to_thread(server.start)
    return Handover(code, close_after, follow, added)


async def _follow_existing(chatter: Chatter, message_id, follow: Follow) -> tuple[Follow, dict]:
    """Reconnect and follow an acked message's reply to its end."""
    t0 = time.monotonic()
    await chatter.connect()
    follow.trace.append(("reconnected after", round(time.monotonic() - t0, 3), chatter.connect_failures))
    follow.reconnects += 1
    ws = chatter.ws
    assert ws is not None
    while True:
        frame = await ws.recv(timeout=30)
        assert frame is not None, "closed again"
        kind, data = frame["type"], frame.get("data") or {}
        follow.trace.append((kind, data.get("index"), [(x["index"], len(x["content"])) for x in
                                                        data.get("active_streams", [])]))
        if kind == "joined":
            for stream in data["active_streams"]:
                assert stream["index"] >= follow.last_index, "the shared state is behind what the client saw"
                follow.text, follow.last_index = stream["content"], stream["index"]
        elif kind == "stream_content":
            if data["index"] <= follow.last_index:
                follow.duplicated += 1
            else:
                follow.gaps += data["index"] != follow.last_index + 1
                follow.text += data["content"]
                follow.last_index = data["index"]
        elif kind == "message_added" and data["message"].get("reply_to") == message_id:
            return follow, data["message"]


async def _stored(cluster, token: str, cid) -> list[dict]:
    status, body = await ahttp("GET", f"{cluster.nginx.base}/api/v1/conversations/{cid}/messages?limit=500", token)
    assert status == 200, body
    return body["messages"]


async def test_rolling_restart_of_all_three_loses_and_repeats_nothing(cluster):
    chatters = []
    for i in range(CHATTERS):
        token, cid = await _user(cluster, f"chat{i}")
        chatters.append(Chatter(cluster, f"c{i}", token, cid))
    stop = asyncio.Event()
    running = [asyncio.create_task(c.run(stop)) for c in chatters]
    await asyncio.sleep(2)
    handovers = []
    for server in cluster.servers:  # one at a time, as an upgrade does
        handovers.append(await _restart_while_streaming(cluster, server))
        await asyncio.sleep(1)
    await asyncio.sleep(2)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*running), 120)

    for h in handovers:
        assert h.close_code == 1001 and h.close_after_s < 2.0, (h.close_code, h.close_after_s)
        assert h.added["status"] == "complete" and h.added["content"] == LONG
        assert h.follow.text == LONG and h.follow.duplicated == 0 and h.follow.gaps == 0, h.follow.trace[:12]
    replies = [(c, cmid, follow, added) for c in chatters for cmid, follow, added in c.replies]
    streamed = sum(len(f.text) for _, _, f, _ in replies) + sum(len(h.follow.text) for h in handovers)
    # A reply that ended while its client was away reaches it as the stored message_added (the
    # page shows that text); the chunks it missed meanwhile are counted, not lost.
    caught_up = [(f, added) for _, _, f, added in replies if f.ended_while_away]
    recovered = sum(len(added["content"]) - len(f.text) for f, added in caught_up)
    lost = sum(len(added["content"]) - len(f.text) for _, _, f, added in replies if not f.ended_while_away)
    duplicated = sum(f.duplicated for _, _, f, _ in replies)
    resent = sum(c.failed_attempts for c in chatters)
    print(f"\nrolling restart of 3 processes: {CHATTERS} chatting clients + 3 watched replies, "
          f"{len(replies)} replies, {streamed:,} characters streamed live, {lost} lost, {duplicated} chunks "
          f"duplicated, {len(caught_up)} replies ended while their client reconnected ({recovered} characters "
          f"from their message_added), {resent} sends refused and resent, handover 1001 after "
          f"{', '.join(f'{h.close_after_s * 1000:.0f}' for h in handovers)} ms")
    assert all(len(c.replies) >= 3 for c in chatters)
    for _, cmid, follow, added in replies:
        assert added["status"] == "complete", (cmid, added)
        assert follow.duplicated == 0 and follow.gaps == 0, cmid
        if follow.ended_while_away:
            assert added["content"].startswith(follow.text), cmid
        else:
            assert follow.text == added["content"], (cmid, str(follow.trace), len(follow.text), len(added["content"]))
    assert lost == 0 and duplicated == 0
    # The store: every acked message once, each answered once, in full.
    for c in chatters:
        stored = await _stored(cluster, c.token, c.cid)
        users = [m for m in stored if m["message_type"] == "user"]
        assert Counter(m["client_msg_id"] for m in users) == Counter(c.sent), c.name
        replies_to = Counter(m["reply_to"] for m in stored if m["message_type"] == "assistant")
        assert all(replies_to[m["id"]] == 1 for m in users if m["client_msg_id"] in
                   {cmid for cmid, _, _ in c.replies}), c.name
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1)), c.name
