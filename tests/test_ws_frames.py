"""Every client frame and every server frame of PROTOCOL.md §3–4, with their exact shapes and audiences."""
from __future__ import annotations

import re
import sqlite3

import pytest

pytestmark = pytest.mark.asyncio

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LONG = "".join(f"w{i:04d} " for i in range(400))  # 2,400 chars: 600 demo tokens, ~1.5 s at 400/s


def send(cid, content, **extra):
    return {"type": "send_message", "data": {"conversation_id": cid, "content": content, "message_type": "user",
                                             **extra}}


async def join(ws, cid, **extra):
    await ws.send({"type": "join_conversation", "data": {"conversation_id": cid, **extra}})
    return await ws.expect("joined", where=lambda f: f["data"]["conversation_id"] == cid)


def types(frames):
    return [f["type"] for f in frames]


def of(frames, ftype):
    return [f for f in frames if f["type"] == ftype]


async def test_ping_pong_echoes_data(chatd):
    _, token = await chatd.register()
    ws = await chatd.ws(token)
    await ws.send({"type": "ping", "data": {"t": 123, "nested": {"a": [1, 2]}}})
    assert (await ws.expect("pong")) == {"type": "pong", "data": {"t": 123, "nested": {"a": [1, 2]}}}
    await ws.send({"type": "ping"})
    assert (await ws.expect("pong"))["data"] == {}
    await ws.send({"type": "ping", "data": {}, "unknown_field": True})
    assert (await ws.expect("pong"))["data"] == {}


async def test_joined_shape_and_ref(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    await ws.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}, "ref": "j1"})
    joined = await ws.expect("joined")
    assert joined["data"]["conversation_id"] == conv["id"]
    assert joined["data"]["seq"] == 0 and joined["data"]["active_streams"] == []
    assert joined["data"].get("ref") == "j1"


async def test_send_message_full_exchange_shapes(chatd):
    user, token = await chatd.register("alice")
    conv = await chatd.conversation(token, title="shapes")
    cid = conv["id"]
    ws = await chatd.ws(token)
    await join(ws, cid)
    await ws.send({**send(cid, "/echo Hello there, streaming world!", client_msg_id="m-1"), "ref": "r-1"})
    frames = await ws.collect_until("message_added", timeout=15)

    ack = of(frames, "ack")
    assert len(ack) == 1
    received = of(frames, "message_received")
    assert len(received) == 1
    msg = received[0]["data"]["message"]
    assert ack[0]["data"] == {"ref": "r-1", "client_msg_id": "m-1", "message_id": msg["id"]}
    assert msg["conversation_id"] == cid and msg["content"] == "/echo Hello there, streaming world!"
    assert msg["message_type"] == "user" and msg["sender_id"] == user["id"]
    assert msg["status"] == "complete" and msg["client_msg_id"] == "m-1" and msg["seq"] == 1
    assert ISO_Z.match(msg["created_at"]), msg["created_at"]
    assert received[0]["data"].get("seq", 1) == 1

    start = of(frames, "stream_start")
    assert len(start) == 1
    sd = start[0]["data"]
    reply_id = sd["message_id"]
    assert sd == {"message_id": reply_id, "conversation_id": cid, "assistant_id": "demo", "reply_to": msg["id"]}
    assert reply_id != msg["id"]

    chunks = [f["data"] for f in of(frames, "stream_content")]
    assert chunks, "no stream_content"
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert all(c["message_id"] == reply_id and c["is_complete"] is False for c in chunks)
    assert all(c["content"] for c in chunks)
    assert "".join(c["content"] for c in chunks) == "Hello there, streaming world!"
    # Order: start before every chunk, chunks before complete, complete before added.
    t = types(frames)
    assert t.index("stream_start") < t.index("stream_content")
    last_chunk = max(i for i, x in enumerate(t) if x == "stream_content")
    assert last_chunk < t.index("stream_complete") < t.index("message_added")

    complete = of(frames, "stream_complete")
    assert len(complete) == 1
    cd = complete[0]["data"]
    assert cd["message_id"] == reply_id and cd["finish_reason"] == "stop"
    u = cd["usage"]
    assert set(u) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert u["completion_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]

    added = of(frames, "message_added")[0]["data"]["message"]
    assert added["id"] == reply_id and added["content"] == "Hello there, streaming world!"
    assert added["message_type"] == "assistant" and added["sender_id"] is None
    assert added["assistant_id"] == "demo" and added["reply_to"] == msg["id"]
    assert added["status"] == "complete" and added["seq"] == 2 and ISO_Z.match(added["created_at"])
    assert added["usage"] == u

    # The assistant shows as typing while it generates: on after stream_start, off before stream_complete.
    typing = [(i, f["data"]) for i, f in enumerate(frames) if f["type"] == "typing_indicator"]
    assert [d for _, d in typing] == [{"conversation_id": cid, "user_id": "assistant", "is_typing": True},
                                      {"conversation_id": cid, "user_id": "assistant", "is_typing": False}]
    assert t.index("stream_start") < typing[0][0] and typing[1][0] < t.index("stream_complete")


async def test_conversation_updated_after_message_carries_last_message_and_seq(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    await ws.send(send(conv["id"], "/echo ok", client_msg_id="x"))
    ack = await ws.expect("ack")
    upd = await ws.expect("conversation_updated", where=lambda f: f["data"]["seq"] == 1)
    c = upd["data"]["conversation"]
    assert c["id"] == conv["id"] and c["last_message"]["id"] == ack["data"]["message_id"]
    assert set(c) >= {"id", "title", "owner_id", "member_ids", "assistant_id", "created_at", "updated_at"}
    # The finished reply updates the sidebar again with the reply's seq.
    upd2 = await ws.expect("conversation_updated", where=lambda f: f["data"]["seq"] == 2, timeout=10)
    assert upd2["data"]["conversation"]["last_message"]["message_type"] == "assistant"


async def test_send_without_join_is_acked_but_gets_no_conversation_events(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    watcher = await chatd.ws(token)
    await join(watcher, conv["id"])
    await ws.send(send(conv["id"], "/echo hi", client_msg_id="a"))
    ack = await ws.expect("ack")
    assert ack["data"]["client_msg_id"] == "a"
    await watcher.expect("message_added", timeout=10)
    got = await ws.quiet(0.3)
    assert set(types(got)) <= {"conversation_updated"}, types(got)
    assert of(got, "conversation_updated"), "a member's unjoined tab still gets its sidebar updates"


async def test_two_tabs_of_one_user_both_receive_every_event(chatd):
    _, token = await chatd.register("alice")
    conv = await chatd.conversation(token, title="t")
    tab1, tab2 = await chatd.ws(token), await chatd.ws(token)
    await join(tab1, conv["id"])
    await join(tab2, conv["id"])
    await tab1.send(send(conv["id"], "/echo two tabs see the same stream"))
    f1 = await tab1.collect_until("message_added", timeout=15)
    f2 = await tab2.collect_until("message_added", timeout=15)
    f1 += await tab1.quiet(0.2)
    f2 += await tab2.quiet(0.2)
    assert "ack" in types(f1) and "ack" not in types(f2)
    strip = [f for f in f1 if f["type"] != "ack"]
    assert strip == f2
    for needed in ("message_received", "stream_start", "stream_content", "stream_complete", "message_added",
                   "conversation_updated", "typing_indicator"):
        assert needed in types(f2), needed


async def test_leave_conversation_stops_conversation_events(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    tab1, tab2 = await chatd.ws(token), await chatd.ws(token)
    await join(tab1, conv["id"])
    await join(tab2, conv["id"])
    await tab2.send({"type": "leave_conversation", "data": {"conversation_id": conv["id"]}, "ref": "L"})
    assert (await tab2.expect("ack"))["data"] == {"ref": "L"}
    await tab1.send(send(conv["id"], "/echo after leave"))
    await tab1.expect("message_added", timeout=10)
    got = await tab2.quiet(0.3)
    assert set(types(got)) == {"conversation_updated"}, types(got)
    # Joining again resumes delivery.
    await join(tab2, conv["id"])
    await tab1.send(send(conv["id"], "/echo back"))
    await tab2.expect("message_received")


async def test_typing_relayed_to_others_not_to_typists_tabs(chatd):
    alice, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    conv = await chatd.conversation(ta, title="t", member_ids=[bob["id"]])
    cid = conv["id"]
    a1, a2, b1 = await chatd.ws(ta), await chatd.ws(ta), await chatd.ws(tb)
    for w in (a1, a2, b1):
        await join(w, cid)
    cases = [
        ({"type": "typing", "data": {"conversation_id": cid, "is_typing": True}}, True),
        ({"type": "typing", "data": {"conversation_id": cid, "is_typing": False}}, False),
        ({"type": "typing_start", "data": {"conversation_id": cid}}, True),
        ({"type": "typing_stop", "data": {"conversation_id": cid}}, False),
    ]
    for frame, is_typing in cases:
        await a1.send(frame)
        got = await b1.expect("typing_indicator")
        assert got["data"] == {"conversation_id": cid, "user_id": alice["id"], "is_typing": is_typing}
    assert of(await a1.quiet(0.3), "typing_indicator") == []
    assert of(await a2.quiet(0.1), "typing_indicator") == []
    # The other direction, with a ref: acked, and relayed to both of alice's tabs.
    await b1.send({"type": "typing_start", "data": {"conversation_id": cid}, "ref": "t"})
    assert (await b1.expect("ack"))["data"] == {"ref": "t"}
    for w in (a1, a2):
        assert (await w.expect("typing_indicator"))["data"] == {"conversation_id": cid, "user_id": bob["id"],
                                                                "is_typing": True}
    assert of(await b1.quiet(0.2), "typing_indicator") == []


async def test_stream_response_to_stored_message(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    cid = conv["id"]
    ws = await chatd.ws(token)
    await join(ws, cid)
    await ws.send(send(cid, "/echo again"))
    first = (await ws.expect("message_received"))["data"]["message"]
    await ws.expect("message_added", timeout=10)
    await ws.quiet(0.2)  # drop what the first exchange left unread
    await ws.send({"type": "stream_response", "data": {"conversation_id": cid, "message_id": first["id"],
                                                       "assistant_id": "demo"}, "ref": "s"})
    frames = await ws.collect_until("message_added", timeout=10)
    ack = of(frames, "ack")[0]["data"]
    start = of(frames, "stream_start")[0]["data"]
    assert ack == {"ref": "s", "message_id": start["message_id"]}
    assert start["reply_to"] == first["id"] and start["assistant_id"] == "demo"
    chunks = of(frames, "stream_content")
    assert [c["data"]["index"] for c in chunks] == list(range(len(chunks)))
    added = frames[-1]["data"]["message"]
    assert added["id"] == start["message_id"] and added["content"] == "again" and added["seq"] == 3


async def test_stop_generation_keeps_partial_text(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    await join(ws, conv["id"])
    await ws.send(send(conv["id"], "/echo " + LONG))
    start = await ws.expect("stream_start")
    mid = start["data"]["message_id"]
    await ws.expect("stream_content")
    await ws.send({"type": "stop_generation", "data": {"message_id": mid}, "ref": "stop"})
    frames = await ws.collect_until("message_added", timeout=10)
    assert [f["data"] for f in of(frames, "ack") if f["data"].get("ref") == "stop"] == [
        {"ref": "stop", "message_id": mid}]
    err = of(frames, "stream_error")
    assert len(err) == 1 and err[0]["data"]["message_id"] == mid and err[0]["data"]["code"] == "CANCELLED"
    assert isinstance(err[0]["data"]["message"], str)
    assert of(frames, "stream_complete") == []
    added = frames[-1]["data"]["message"]
    assert added["status"] == "cancelled"
    assert 0 < len(added["content"]) < len(LONG) and LONG.startswith(added["content"])
    # A stop for a reply that already ended is a harmless no-op.
    await ws.send({"type": "stop_generation", "data": {"message_id": mid}})
    assert (await ws.expect("ack"))["data"] == {"message_id": mid}


async def test_provider_failure_is_stream_error(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    await join(ws, conv["id"])
    await ws.send(send(conv["id"], "please /fail 3"))
    frames = await ws.collect_until("message_added", timeout=10)
    err = of(frames, "stream_error")
    assert len(err) == 1 and err[0]["data"]["code"] == "PROVIDER_UNAVAILABLE"
    mid = of(frames, "stream_start")[0]["data"]["message_id"]
    assert err[0]["data"]["message_id"] == mid
    assert of(frames, "stream_complete") == []
    added = frames[-1]["data"]["message"]
    assert added["status"] == "error" and added["id"] == mid
    text = "".join(f["data"]["content"] for f in of(frames, "stream_content"))
    # Every token the provider produced before failing is kept: sent, then stored.
    assert added["content"] == text == 'You said: "please'
    # The connection is still usable.
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")


async def test_conversation_updated_reaches_every_member_connection(chatd):
    alice, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    a_joined, a_idle = await chatd.ws(ta), await chatd.ws(ta)
    b_idle = await chatd.ws(tb)
    conv = await chatd.conversation(ta, title="team", member_ids=[bob["id"]])
    cid = conv["id"]
    for w in (a_joined, a_idle, b_idle):
        created = await w.expect("conversation_updated")
        assert created["data"]["seq"] == 0
        assert created["data"]["conversation"]["id"] == cid
        assert sorted(created["data"]["conversation"]["member_ids"]) == sorted([alice["id"], bob["id"]])
    await join(a_joined, cid)
    status, _, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"title": "renamed"})
    assert status == 200
    for w in (a_joined, a_idle, b_idle):
        upd = await w.expect("conversation_updated")
        assert upd["data"]["seq"] == 1 and upd["data"]["conversation"]["title"] == "renamed"
    # An outsider's socket hears nothing.
    _, tc = await chatd.register("carol")
    c = await chatd.ws(tc)
    await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"title": "again"})
    await b_idle.expect("conversation_updated")
    assert await c.quiet(0.3) == []


async def test_resend_same_client_msg_id_creates_one_row(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    ws = await chatd.ws(token)
    await join(ws, conv["id"])
    await ws.send(send(conv["id"], "/echo once", client_msg_id="dup-1"))
    first = await ws.expect("ack")
    await ws.expect("message_added", timeout=10)
    await ws.quiet(0.2)  # drop what the first exchange left unread
    # Resend, also from another tab (a reconnect).
    ws2 = await chatd.ws(token)
    for sock in (ws, ws2):
        await sock.send({**send(conv["id"], "/echo once", client_msg_id="dup-1"), "ref": "again"})
        again = await sock.expect("ack")
        assert again["data"] == {"ref": "again", "client_msg_id": "dup-1", "message_id": first["data"]["message_id"]}
    got = await ws.quiet(0.4)
    assert of(got, "message_received") == [] and of(got, "stream_start") == []
    db = sqlite3.connect(chatd.server.settings.db_path)
    try:
        n = db.execute("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'dup-1'").fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conv["id"],)).fetchone()[0]
    finally:
        db.close()
    assert n == 1 and total == 2  # the message and its one reply
    # The same client_msg_id in another conversation is a different message.
    conv2 = await chatd.conversation(token, title="t")
    await ws.send(send(conv2["id"], "/echo once", client_msg_id="dup-1"))
    other = await ws.expect("ack")
    assert other["data"]["message_id"] != first["data"]["message_id"]


async def test_seq_grows_by_one_per_stored_event(chatd):
    _, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    carol, _ = await chatd.register("carol")
    sidebar = await chatd.ws(ta)  # not joined: sees only conversation_updated
    conv = await chatd.conversation(ta, title="t", member_ids=[bob["id"]])
    cid = conv["id"]
    assert (await sidebar.expect("conversation_updated"))["data"]["seq"] == 0
    ws = await chatd.ws(ta)
    await join(ws, cid)
    seqs: list[int] = []

    await ws.send(send(cid, "/echo one"))
    frames = await ws.collect_until("message_added", timeout=10)
    seqs.append(of(frames, "message_received")[0]["data"]["message"]["seq"])
    seqs.append(frames[-1]["data"]["message"]["seq"])

    status, _, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"title": "renamed"})
    assert status == 200
    upd = await ws.expect("conversation_updated", where=lambda f: f["data"]["conversation"]["title"] == "renamed")
    seqs.append(upd["data"]["seq"])

    status, _, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta,
                                       body={"member_ids": [carol["id"]]})
    assert status == 200
    upd = await ws.expect("conversation_updated",
                          where=lambda f: carol["id"] in f["data"]["conversation"]["member_ids"])
    seqs.append(upd["data"]["seq"])

    await ws.send(send(cid, "/echo two"))
    frames = await ws.collect_until("message_added", timeout=10)
    seqs.append(of(frames, "message_received")[0]["data"]["message"]["seq"])
    seqs.append(frames[-1]["data"]["message"]["seq"])

    status, body, _ = await chatd.request("DELETE", f"/api/v1/conversations/{cid}", ta)
    assert status == 200
    upd = await ws.expect("conversation_updated", where=lambda f: f["data"]["conversation"].get("deleted") is True)
    seqs.append(upd["data"]["seq"])
    assert seqs == list(range(1, 8)), seqs

    # The unjoined tab saw every change with the same seq; updates that reflect a message carry its seq.
    side = of(await sidebar.quiet(0.3), "conversation_updated")
    assert [f["data"]["seq"] for f in side] == list(range(1, 8))
    assert side[-1]["data"]["conversation"]["deleted"] is True
    # A member asking for the deleted conversation gets NOT_FOUND (not FORBIDDEN).
    b = await chatd.ws(tb)
    await b.send({"type": "join_conversation", "data": {"conversation_id": cid}})
    err = await b.expect("error")
    assert err["data"]["code"] == "NOT_FOUND"


async def test_added_member_hears_the_change_and_can_join(chatd):
    _, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    conv = await chatd.conversation(ta, title="t")
    b = await chatd.ws(tb)
    await b.send({"type": "join_conversation", "data": {"conversation_id": conv["id"]}})
    assert (await b.expect("error"))["data"]["code"] == "FORBIDDEN"
    status, _, _ = await chatd.request("PATCH", f"/api/v1/conversations/{conv['id']}", ta,
                                       body={"member_ids": [bob["id"]]})
    assert status == 200
    upd = await b.expect("conversation_updated")
    assert upd["data"]["seq"] == 1 and bob["id"] in upd["data"]["conversation"]["member_ids"]
    joined = await join(b, conv["id"])
    assert joined["data"]["seq"] == 1


async def test_joined_mid_stream_reports_active_stream_and_continues(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token, title="t")
    sender, late = await chatd.ws(token), await chatd.ws(token)
    await join(sender, conv["id"])
    await sender.send(send(conv["id"], "/echo " + LONG))
    start = await sender.expect("stream_start")
    await sender.expect("stream_content", where=lambda f: f["data"]["index"] >= 2)
    joined = await join(late, conv["id"])
    active = joined["data"]["active_streams"]
    assert len(active) == 1 and active[0]["message_id"] == start["data"]["message_id"]
    assert active[0]["index"] >= 2 and LONG.startswith(active[0]["content"]) and active[0]["content"]
    assert joined["data"]["seq"] == 1
    frames = await late.collect_until("message_added", timeout=15)
    chunks = [f["data"] for f in of(frames, "stream_content")]
    assert [c["index"] for c in chunks] == list(range(active[0]["index"] + 1, active[0]["index"] + 1 + len(chunks)))
    assert active[0]["content"] + "".join(c["content"] for c in chunks) == LONG
    assert frames[-1]["data"]["message"]["content"] == LONG
