"""The walking skeleton end to end: auth, join, send, a streamed demo reply."""
from __future__ import annotations

import pytest


@pytest.mark.asyncio
async def test_chat_with_demo_assistant(chatd):
    user, token = await chatd.register("alice")
    conv = await chatd.conversation(token, title="hello")
    ws = await chatd.ws(token)
    await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}})
    joined = await ws.expect("joined")
    assert joined["data"] == {"conversation_id": conv["id"], "seq": 0, "active_streams": []}
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "Hello, AI!",
                                                    "message_type": "user", "client_msg_id": "c1"}})
    frames = await ws.collect_until("message_added", timeout=15)
    types = [f["type"] for f in frames]
    assert "ack" in types and "message_received" in types and "stream_start" in types
    received = next(f for f in frames if f["type"] == "message_received")["data"]["message"]
    assert received["content"] == "Hello, AI!" and received["sender_id"] == user["id"] and received["seq"] == 1
    chunks = [f["data"] for f in frames if f["type"] == "stream_content"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    text = "".join(c["content"] for c in chunks)
    added = frames[-1]["data"]["message"]
    assert added["content"] == text and added["status"] == "complete" and added["seq"] == 2
    assert "OPENAI_API_KEY" in text
    complete = next(f for f in frames if f["type"] == "stream_complete")["data"]
    assert complete["usage"]["completion_tokens"] >= 40
    assert complete["finish_reason"] == "stop"


@pytest.mark.asyncio
async def test_sender_gets_its_ack_before_its_own_message_received(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token)
    ws = await chatd.ws(token)
    await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}})
    await ws.expect("joined")
    await ws.send({"type": "send_message", "ref": "r1", "data": {
        "conversation_id": conv["id"], "content": "order?", "message_type": "user", "client_msg_id": "o1"}})
    frames = await ws.collect_until("message_received")
    types = [f["type"] for f in frames]
    assert types.index("ack") < types.index("message_received")
    ack = frames[types.index("ack")]["data"]
    assert ack == {"ref": "r1", "client_msg_id": "o1", "message_id": frames[-1]["data"]["message"]["id"]}
