"""§7 limits: messages per user per window, concurrent replies per user, frames per second."""
from __future__ import annotations

import asyncio

import pytest

from chatd.config import load_settings
from chatd.testing import ScriptedPlugin, scripted_settings, test_settings


@pytest.fixture
def chatd_plugins():
    return [ScriptedPlugin()]


@pytest.fixture
def chatd_settings(request, tmp_path):
    return test_settings(tmp_path, **scripted_settings(["x "] * 100, delay=0.02), **request.param)


async def _setup(chatd):
    user, token = await chatd.register()
    conv = await chatd.conversation(token)
    ws = await chatd.ws(token)
    return token, conv["id"], ws


async def _count(chatd, token, cid):
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token)
    return len(body["messages"])


def _send(cid, content, ref, **kw):
    return {"type": "send_message", "ref": ref, "data": {"conversation_id": cid, "content": content,
                                                         "message_type": "user", **kw}}


@pytest.mark.asyncio
@pytest.mark.parametrize("chatd_settings", [{"rate_messages": 3, "rate_window_s": 1.5,
                                             "max_concurrent_replies": 50}], indirect=True)
async def test_messages_per_window(chatd):
    token, cid, ws = await _setup(chatd)
    for i in range(3):
        await ws.send(_send(cid, "/echo ok", f"m{i}", assistant_id="demo"))
        assert (await ws.expect("ack", where=lambda f, i=i: f["data"].get("ref") == f"m{i}"))
    before = await _count(chatd, token, cid)
    await ws.send(_send(cid, "/echo too many", "m3", assistant_id="demo", client_msg_id="late"))
    err = (await ws.expect("error"))["data"]
    assert err["code"] == "RATE_LIMITED" and err["ref"] == "m3" and 0 < err["retry_after"] <= 1.5
    await asyncio.sleep(0.3)
    assert await _count(chatd, token, cid) == before  # nothing stored
    await asyncio.sleep(err["retry_after"])
    await ws.send(_send(cid, "/echo again", "m4", assistant_id="demo", client_msg_id="late"))
    assert (await ws.expect("ack", where=lambda f: f["data"].get("ref") == "m4"))["data"]["client_msg_id"] == "late"
    # Another user has their own budget.
    _, token2 = await chatd.register()
    conv2 = await chatd.conversation(token2)
    ws2 = await chatd.ws(token2)
    await ws2.send(_send(conv2["id"], "/echo hi", "o1", assistant_id="demo"))
    assert (await ws2.expect("ack"))["data"]["ref"] == "o1"


@pytest.mark.asyncio
@pytest.mark.parametrize("chatd_settings", [{"rate_messages": 1000, "max_concurrent_replies": 2}], indirect=True)
async def test_concurrent_replies_cap(chatd):
    token, cid, ws = await _setup(chatd)
    await ws.join(cid)
    for i in range(2):
        await ws.send(_send(cid, f"q{i}", f"m{i}"))
        await ws.expect("ack", where=lambda f, i=i: f["data"].get("ref") == f"m{i}")
    before = await _count(chatd, token, cid)
    await ws.send(_send(cid, "third", "m2"))
    err = (await ws.expect("error"))["data"]
    assert err["code"] == "RATE_LIMITED" and err["ref"] == "m2" and err["retry_after"] > 0
    assert await _count(chatd, token, cid) == before  # the refused message was not stored
    # stream_response is capped too.
    msgs = (await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token))[1]["messages"]
    first_user = next(m for m in msgs if m["message_type"] == "user")
    await ws.send({"type": "stream_response", "ref": "sr", "data": {"conversation_id": cid,
                                                                     "message_id": first_user["id"],
                                                                     "assistant_id": "demo"}})
    err = (await ws.expect("error", where=lambda f: f["data"].get("ref") == "sr"))["data"]
    assert err["code"] in ("RATE_LIMITED", "CONFLICT")
    # Stop one: its slot is free again.
    start = (await ws.expect("stream_start"))["data"]
    await ws.send({"type": "stop_generation", "data": {"message_id": start["message_id"]}})
    await ws.expect("message_added", where=lambda f: f["data"]["message"]["id"] == start["message_id"])
    await ws.send(_send(cid, "fourth", "m3"))
    ack = await ws.expect("ack", where=lambda f: f["data"].get("ref") == "m3")
    # Its reply started (the freed slot was reused), and the cap still holds.
    await ws.expect("stream_start", where=lambda f: f["data"]["reply_to"] == ack["data"]["message_id"])
    assert 1 <= chatd.server.replies.active_count <= 2


@pytest.mark.asyncio
@pytest.mark.parametrize("chatd_settings", [{"max_frames_per_second": 10}], indirect=True)
async def test_frames_per_second_closes_1008(chatd):
    token, cid, ws = await _setup(chatd)
    # At the limit's pace, nothing happens.
    polite = await chatd.ws(token)
    for i in range(15):
        await polite.send({"type": "ping", "data": {"i": i}})
        assert (await polite.expect("pong"))["data"] == {"i": i}
        await asyncio.sleep(0.12)
    # A burst beyond the bucket closes the connection with 1008.
    for i in range(40):
        try:
            await ws.send({"type": "ping", "data": {"i": i}})
        except Exception:
            break
    code, reason = await ws.closed(timeout=5)
    assert code == 1008
    await polite.send({"type": "ping", "data": {}})
    await polite.expect("pong")


def test_limits_are_configurable_from_the_environment(tmp_path):
    s = load_settings(environ={"CHATD_RATE_MESSAGES": "7", "CHATD_RATE_WINDOW_S": "3.5",
                               "CHATD_MAX_CONCURRENT_REPLIES": "4", "CHATD_MAX_FRAMES_PER_SECOND": "9",
                               "CHATD_OUTBOUND_QUEUE_BYTES": "4096", "CHATD_HEARTBEAT_INTERVAL_S": "5",
                               "CHATD_HEARTBEAT_TIMEOUT_S": "4", "CHATD_CHECKPOINT_INTERVAL_S": "0.5",
                               "CHATD_COALESCE_MS": "3", "CHATD_SHUTDOWN_GRACE_S": "2",
                               "CHATD_DATA_DIR": str(tmp_path)})
    assert (s.rate_messages, s.rate_window_s, s.max_concurrent_replies, s.max_frames_per_second,
            s.outbound_queue_bytes, s.heartbeat_interval_s, s.heartbeat_timeout_s, s.checkpoint_interval_s,
            s.coalesce_ms, s.shutdown_grace_s) == (7, 3.5, 4, 9, 4096, 5.0, 4.0, 0.5, 3.0, 2.0)
    d = load_settings(environ={"CHATD_DATA_DIR": str(tmp_path)})
    assert (d.rate_messages, d.rate_window_s, d.max_concurrent_replies, d.max_frames_per_second,
            d.max_frame_bytes, d.max_message_chars, d.heartbeat_interval_s, d.heartbeat_timeout_s,
            d.checkpoint_interval_s) == (20, 10.0, 5, 50, 65536, 32000, 20.0, 20.0, 1.0)
