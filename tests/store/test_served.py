"""chatd served from each store: the protocol's flows end to end over real sockets."""
from __future__ import annotations

import pytest
import pytest_asyncio

from chatd.store.urls import store_kind
from chatd.testing import serving, test_settings

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def served(store_url, tmp_path):
    """A chatd server on the store at `store_url` and a client of it."""
    kind = store_kind(store_url)
    settings = test_settings(tmp_path, store=kind, store_url="" if kind == "sqlite" else store_url,
                             sqlite_path=store_url.removeprefix("sqlite:///") if kind == "sqlite" else "")
    async with serving(settings) as client:
        yield client


async def test_a_reply_streams_is_stored_and_replays_from_since_seq(served):
    user, token = await served.register("alice")
    conv = await served.conversation(token, title="on this store")
    ws = await served.ws(token)
    await ws.join(conv["id"])
    await ws.send({"type": "send_message", "ref": "a", "data": {
        "conversation_id": conv["id"], "content": "/echo stored where it should be", "message_type": "user",
        "client_msg_id": "k1"}})
    frames = await ws.collect_until("message_added", timeout=15)
    chunks = [f["data"] for f in frames if f["type"] == "stream_content"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    added = frames[-1]["data"]["message"]
    assert added["content"] == "".join(c["content"] for c in chunks) and added["status"] == "complete"
    # A resend of the same client_msg_id is acked with the original and stored once.
    await ws.send({"type": "send_message", "ref": "b", "data": {
        "conversation_id": conv["id"], "content": "/echo stored where it should be", "message_type": "user",
        "client_msg_id": "k1"}})
    ack = await ws.expect("ack")
    received = next(f for f in frames if f["type"] == "message_received")["data"]["message"]
    assert ack["data"]["message_id"] == received["id"]
    # A second tab that saw nothing replays every stored change.
    other = await served.ws(token)
    await other.send({"type": "join_conversation", "data": {"conversation_id": conv["id"], "since_seq": 0}})
    replay = await other.collect_until("joined", timeout=10)
    assert [f["data"]["message"]["seq"] for f in replay if f["type"] in ("message_received", "message_added")] \
        == [1, 2]
    status, body, _ = await served.request("GET", f"/api/v1/conversations/{conv['id']}/messages", token)
    assert status == 200 and [m["content"] for m in body["messages"]][-1] == added["content"]
    status, listing, _ = await served.request("GET", "/api/v1/conversations", token)
    assert status == 200 and listing["conversations"][0]["id"] == conv["id"]
    # Another user's id of this conversation is refused, whatever the store.
    _, bob = await served.register("bob")
    status, body, _ = await served.request("GET", f"/api/v1/conversations/{conv['id']}/messages", bob)
    assert (status, body["error"]["code"]) in ((403, "FORBIDDEN"), (404, "NOT_FOUND")), body
