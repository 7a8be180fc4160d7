"""§6/issue 3 item 4: provider failure, stop_generation (provider sees it), CONFLICT."""
from __future__ import annotations

import pytest

from chatd.testing import ScriptedPlugin, scripted_settings, test_settings

DELTAS = [f"w{i} " for i in range(300)]


@pytest.fixture
def plugin():
    return ScriptedPlugin()


@pytest.fixture
def chatd_plugins(plugin):
    return [plugin]


@pytest.fixture
def chatd_settings(tmp_path):
    return test_settings(tmp_path, **scripted_settings(DELTAS, delay=0.01), coalesce_ms=0.0)


async def _setup(chatd, tabs=1):
    user, token = await chatd.register()
    conv = await chatd.conversation(token)
    sockets = []
    for _ in range(tabs):
        ws = await chatd.ws(token)
        await ws.join(conv["id"])
        sockets.append(ws)
    return token, conv["id"], sockets


async def _messages(chatd, token, cid):
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token)
    assert status == 200
    return body["messages"]


def _assemble(frames, mid):
    chunks = [f["data"] for f in frames if f["type"] == "stream_content" and f["data"]["message_id"] == mid]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    return "".join(c["content"] for c in chunks)


@pytest.mark.asyncio
async def test_provider_error_mid_stream_keeps_partial_text_as_error(chatd):
    token, cid, (ws,) = await _setup(chatd)
    await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/fail 7",
                                                    "message_type": "user", "assistant_id": "demo"}})
    frames = await ws.collect_until("message_added", timeout=10,
                                    where=lambda f: f["data"]["message"]["message_type"] == "assistant")
    start = next(f for f in frames if f["type"] == "stream_start")["data"]
    mid = start["message_id"]
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err["message_id"] == mid and err["code"] == "PROVIDER_UNAVAILABLE" and err["message"]
    assert not any(f["type"] == "stream_complete" for f in frames)
    text = _assemble(frames, mid)
    assert len(text.split()) == 7
    added = frames[-1]["data"]["message"]
    assert added["id"] == mid and added["status"] == "error" and added["content"] == text
    stored = {m["id"]: m for m in await _messages(chatd, token, cid)}
    assert stored[mid]["status"] == "error" and stored[mid]["content"] == text


@pytest.mark.asyncio
async def test_stop_generation_cancels_and_closes_the_provider(chatd, plugin):
    token, cid, (ws,) = await _setup(chatd)
    await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "go", "message_type": "user"}})
    start = (await ws.expect("stream_start"))["data"]
    mid = start["message_id"]
    for _ in range(5):
        await ws.expect("stream_content")
    await ws.send({"type": "stop_generation", "data": {"message_id": mid}, "ref": "s1"})
    frames = await ws.collect_until("message_added", timeout=5)
    ack = next(f for f in frames if f["type"] == "ack" and f["data"].get("ref") == "s1")["data"]
    assert ack["ref"] == "s1" and ack["message_id"] == mid
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err == {"message_id": mid, "code": "CANCELLED", "message": err["message"]}
    added = frames[-1]["data"]["message"]
    text = _assemble(ws.frames, mid)
    assert added["status"] == "cancelled" and added["content"] == text and text
    provider = plugin.provider
    # The provider's iterator saw the cancellation and never ran to its end.
    assert provider.cancelled + provider.closed == 1 and provider.finished == 0
    assert provider.yielded < len(DELTAS)
    assert (await ws.quiet(0.3)) == [] or all(f["type"] != "stream_content" for f in await ws.quiet(0.1))
    stored = {m["id"]: m for m in await _messages(chatd, token, cid)}
    assert stored[mid]["status"] == "cancelled" and stored[mid]["content"] == text
    assert chatd.server.replies.active_count == 0


@pytest.mark.asyncio
async def test_stop_from_second_tab_and_conflict(chatd, plugin):
    token, cid, (tab1, tab2) = await _setup(chatd, tabs=2)
    other = await chatd.ws(token)  # a third connection, not joined
    await tab1.send({"type": "send_message", "data": {"conversation_id": cid, "content": "go", "message_type": "user",
                                                      "client_msg_id": "m1"}})
    ack = await tab1.expect("ack")
    user_mid = ack["data"]["message_id"]
    mid = (await tab2.expect("stream_start"))["data"]["message_id"]
    await tab2.expect("stream_content")
    # A second stream_response for a message already being answered: CONFLICT, nothing stored.
    await tab2.send({"type": "stream_response", "data": {"conversation_id": cid, "message_id": user_mid,
                                                         "assistant_id": "scripted"}, "ref": "dup"})
    err = await tab2.expect("error")
    assert err["data"]["code"] == "CONFLICT" and err["data"]["ref"] == "dup"
    assert len([m for m in await _messages(chatd, token, cid) if m["message_type"] == "assistant"]) == 1
    # Stop from a connection that did not start the reply (and is not even joined).
    await other.send({"type": "stop_generation", "data": {"message_id": mid}})
    assert (await other.expect("ack"))["data"]["message_id"] == mid
    for tab in (tab1, tab2):
        e = await tab.expect("stream_error", timeout=5)
        assert e["data"]["code"] == "CANCELLED"
        added = await tab.expect("message_added", timeout=5)
        assert added["data"]["message"]["status"] == "cancelled"
    assert plugin.provider.finished == 0 and plugin.provider.cancelled + plugin.provider.closed == 1
    # Once it ended, the message can be answered again.
    await tab2.send({"type": "stream_response", "data": {"conversation_id": cid, "message_id": user_mid,
                                                         "assistant_id": "scripted"}})
    assert (await tab2.expect("ack"))["data"]["message_id"] != mid
    new_mid = (await tab2.expect("stream_start"))["data"]["message_id"]
    await tab2.send({"type": "stop_generation", "data": {"message_id": new_mid}})
    await tab2.expect("message_added", timeout=5)


@pytest.mark.asyncio
async def test_stop_of_a_finished_reply_is_a_no_op(chatd):
    token, cid, (ws,) = await _setup(chatd)
    await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo hi there",
                                                    "message_type": "user", "assistant_id": "demo"}})
    added = (await ws.collect_until("message_added", timeout=10))[-1]["data"]["message"]
    await ws.quiet(0.2)
    await ws.send({"type": "stop_generation", "data": {"message_id": added["id"]}})
    await ws.expect("ack")
    assert [f["type"] for f in await ws.quiet(0.3)] == []
    stored = {m["id"]: m for m in await _messages(chatd, token, cid)}
    assert stored[added["id"]]["status"] == "complete" and stored[added["id"]]["content"] == "hi there"
