"""Every error the WebSocket can answer (PROTOCOL.md §5): codes, check order, refs, close codes."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import jwt
import pytest
import pytest_asyncio

from chatd import hookimpl
from chatd.filters import InboundFilter
from chatd.providers import Provider
from chatd.pytest_plugin import test_settings

pytestmark = pytest.mark.asyncio

LONG = "".join(f"w{i:04d} " for i in range(400))  # ~1.5 s of demo reply at 400 tokens/s


class ExplodingFilter(InboundFilter):
    """An inbound filter with a bug: any message containing `boom` raises."""

    name = "exploding"

    async def inbound(self, content, ctx):
        if "boom" in content:
            raise RuntimeError("secret internal detail xyzzy")
        return content


class BuggyProvider(Provider):
    """A provider with a bug: a few deltas, then an unexpected exception."""

    type_name = "buggy"

    def __init__(self, config):
        self.config = config

    async def stream(self, request, completion):
        yield "partial "
        yield "text"
        raise KeyError("provider internals qwerty")


class ExplodingPlugin:
    @hookimpl
    def register_filters(self, register):
        register(ExplodingFilter())

    @hookimpl
    def register_providers(self, register):
        register("buggy", BuggyProvider)


@pytest.fixture
def chatd_settings(tmp_path, request):
    """Per-test overrides through `@pytest.mark.parametrize("chatd_settings", [{...}], indirect=True)`."""
    return test_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def chatd_plugins():
    return [ExplodingPlugin()]


def send(cid, content, **extra):
    return {"type": "send_message", "data": {"conversation_id": cid, "content": content, "message_type": "user",
                                             **extra}}


async def join(ws, cid):
    await ws.send({"type": "join_conversation", "data": {"conversation_id": cid}})
    return await ws.expect("joined")


async def error_for(ws, frame, ref: str | None = "e"):
    """Send a frame (with a ref when given) and return the error's data; the socket stays usable."""
    if isinstance(frame, dict) and ref is not None:
        frame = {**frame, "ref": ref}
    await ws.send(frame)
    err = await ws.expect("error")
    await ws.send({"type": "ping", "data": {"alive": True}})
    assert (await ws.expect("pong"))["data"] == {"alive": True}, "socket unusable after an error"
    return err["data"]


def count_messages(chatd, cid=None) -> int:
    db = sqlite3.connect(chatd.server.settings.db_path)
    try:
        if cid is None:
            return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (cid,)).fetchone()[0]
    finally:
        db.close()


def token_with_roles(chatd, user_id, roles):
    secret = (Path(chatd.server.settings.data_dir) / "jwt_secret").read_text().strip()
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "iat": now, "exp": now + 600, "roles": roles}, secret, algorithm="HS256")


@pytest_asyncio.fixture
async def alice(chatd):
    user, token = await chatd.register("alice")
    conv = await chatd.conversation(token, title="alice's")
    ws = await chatd.ws(token)
    return {"user": user, "token": token, "conv": conv, "cid": conv["id"], "ws": ws}


async def test_invalid_json(chatd, alice):
    ws = alice["ws"]
    for text in ("{not json", "", "[1, 2]", '"a string"', "42", "null"):
        data = await error_for(ws, text)
        assert data["code"] == "INVALID_JSON", text
        assert "ref" not in data
        assert isinstance(data["message"], str) and data["message"]


async def test_binary_frame_is_invalid_message(chatd, alice):
    ws = alice["ws"]
    await ws.conn.write_message(b'{"type":"ping","data":{}}', binary=True)
    err = await ws.expect("error")
    assert err["data"]["code"] == "INVALID_MESSAGE"
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")


async def test_unknown_type(chatd, alice):
    data = await error_for(alice["ws"], {"type": "launch_rockets", "data": {}})
    assert data["code"] == "UNKNOWN_TYPE" and data["ref"] == "e"
    # An unknown type wins over a broken schema (type is checked before schema).
    data = await error_for(alice["ws"], {"type": "launch_rockets", "data": "not an object"})
    assert data["code"] == "UNKNOWN_TYPE"


@pytest.mark.parametrize("frame, field", [
    ({"data": {}}, "type"),
    ({"type": 7, "data": {}}, "type"),
    ({"type": "send_message"}, "data"),
    ({"type": "send_message", "data": [1]}, "data"),
    ({"type": "send_message", "data": {"conversation_id": 1, "message_type": "user"}}, "content"),
    ({"type": "send_message", "data": {"conversation_id": 1, "content": 5, "message_type": "user"}}, "content"),
    ({"type": "send_message", "data": {"content": "x", "message_type": "user"}}, "conversation_id"),
    ({"type": "send_message", "data": {"conversation_id": 1, "content": "x", "message_type": "robot"}},
     "message_type"),
    ({"type": "send_message", "data": {"conversation_id": 1, "content": "x", "message_type": "user",
                                       "client_msg_id": 9}}, "client_msg_id"),
    ({"type": "join_conversation", "data": {}}, "conversation_id"),
    ({"type": "join_conversation", "data": {"conversation_id": 1, "since_seq": "3"}}, "since_seq"),
    ({"type": "leave_conversation", "data": {}}, "conversation_id"),
    ({"type": "stream_response", "data": {"conversation_id": 1}}, "message_id"),
    ({"type": "typing", "data": {"conversation_id": 1}}, "is_typing"),
    ({"type": "typing", "data": {"conversation_id": 1, "is_typing": "yes"}}, "is_typing"),
    ({"type": "typing_start", "data": {}}, "conversation_id"),
    ({"type": "typing_stop", "data": {"conversation_id": None}}, "conversation_id"),
    ({"type": "stop_generation", "data": {}}, "message_id"),
    ({"type": "stop_generation", "data": {"message_id": [1]}}, "message_id"),
])
async def test_invalid_message_names_the_field(chatd, alice, frame, field):
    data = await error_for(alice["ws"], frame)
    assert data["code"] == "INVALID_MESSAGE"
    assert field in data["message"], data["message"]
    assert data["ref"] == "e"


@pytest.mark.parametrize("ref", ["x" * 65, 12, {"a": 1}, ["r"]])
async def test_bad_ref_is_invalid_message(chatd, alice, ref):
    ws = alice["ws"]
    await ws.send({"type": "ping", "data": {}, "ref": ref})
    err = await ws.expect("error")
    assert err["data"]["code"] == "INVALID_MESSAGE" and "ref" in err["data"]["message"]
    assert "ref" not in err["data"]  # a bad ref is not echoed
    await ws.send({"type": "ping", "data": {}, "ref": "x" * 64})  # 64 chars is fine
    assert (await ws.expect("pong"))["data"] == {}


async def test_unknown_fields_are_ignored(chatd, alice):
    ws = alice["ws"]
    await ws.send({"type": "join_conversation", "data": {"conversation_id": alice["cid"], "colour": "blue"},
                   "extra": 1})
    await ws.expect("joined")


async def test_check_order_schema_before_authorization(chatd, alice):
    bob, tb = await chatd.register("bob")
    bws = await chatd.ws(tb)
    cid = alice["cid"]  # bob is not a member
    data = await error_for(bws, {"type": "send_message", "data": {"conversation_id": cid, "message_type": "user"}})
    assert data["code"] == "INVALID_MESSAGE" and "content" in data["message"]
    data = await error_for(bws, {"type": "typing", "data": {"conversation_id": cid}})
    assert data["code"] == "INVALID_MESSAGE"
    data = await error_for(bws, {"type": "join_conversation", "data": {"conversation_id": cid, "since_seq": []}})
    assert data["code"] == "INVALID_MESSAGE"
    # JSON first of all.
    assert (await error_for(bws, f'{{"type": "send_message", "data": {{"conversation_id": {cid}'))["code"] == \
        "INVALID_JSON"
    # Authorization before limits: too long and not a member is FORBIDDEN.
    data = await error_for(bws, send(cid, "x" * 32001))
    assert data["code"] == "FORBIDDEN"


async def test_forbidden_for_non_members(chatd, alice):
    _, tb = await chatd.register("bob")
    bws = await chatd.ws(tb)
    cid = alice["cid"]
    # Get a real message and a live reply id in alice's conversation.
    aws = alice["ws"]
    await join(aws, cid)
    await aws.send(send(cid, "/echo " + LONG))
    msg_id = (await aws.expect("message_received"))["data"]["message"]["id"]
    reply_id = (await aws.expect("stream_start"))["data"]["message_id"]
    frames = [
        {"type": "join_conversation", "data": {"conversation_id": cid}},
        {"type": "leave_conversation", "data": {"conversation_id": cid}},
        send(cid, "let me in"),
        {"type": "stream_response", "data": {"conversation_id": cid, "message_id": msg_id, "assistant_id": "demo"}},
        {"type": "typing", "data": {"conversation_id": cid, "is_typing": True}},
        {"type": "typing_start", "data": {"conversation_id": cid}},
        {"type": "typing_stop", "data": {"conversation_id": cid}},
        {"type": "stop_generation", "data": {"message_id": reply_id}},
    ]
    for frame in frames:
        data = await error_for(bws, frame, ref=frame["type"])
        assert data["code"] == "FORBIDDEN", frame
        assert data["ref"] == frame["type"]
    # A conversation that does not exist is FORBIDDEN too (no existence oracle).
    for frame in (send(987654, "hi"), {"type": "join_conversation", "data": {"conversation_id": 987654}},
                  {"type": "join_conversation", "data": {"conversation_id": "abc"}}):
        assert (await error_for(bws, frame))["code"] == "FORBIDDEN", frame
    # Nothing reached alice's conversation from bob: the reply still streams, no message added, no typing.
    frames = await aws.collect_until("message_added", timeout=15)
    assert frames[-1]["data"]["message"]["status"] == "complete"
    assert not [f for f in frames if f["type"] in ("message_received", "typing_indicator")
                and f["data"].get("user_id") != "assistant"]
    assert count_messages(chatd, cid) == 2
    # And bob's socket never got alice's events.
    assert [f for f in await bws.quiet(0.2) if f["type"] != "pong"] == []


async def test_non_admin_may_only_post_user_messages(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    for mtype in ("assistant", "system"):
        data = await error_for(ws, {"type": "send_message", "data": {"conversation_id": cid, "content": "I am root",
                                                                     "message_type": mtype}})
        assert data["code"] == "FORBIDDEN"
    assert count_messages(chatd, cid) == 0
    # An admin token may post a system message: stored, broadcast, no AI reply.
    admin_ws = await chatd.ws(token_with_roles(chatd, alice["user"]["id"], ["admin"]))
    await join(admin_ws, cid)
    await admin_ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "Be nice.",
                                                          "message_type": "system"}, "ref": "sys"})
    ack = await admin_ws.expect("ack")
    assert ack["data"]["ref"] == "sys"
    got = (await admin_ws.expect("message_received"))["data"]["message"]
    assert got["message_type"] == "system" and got["status"] == "complete" and got["id"] == ack["data"]["message_id"]
    assert [f for f in await admin_ws.quiet(0.3) if f["type"] == "stream_start"] == []


async def test_message_too_long_creates_nothing(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    data = await error_for(ws, send(cid, "x" * 32001, client_msg_id="big"))
    assert data["code"] == "MESSAGE_TOO_LONG" and data["ref"] == "e"
    assert count_messages(chatd) == 0
    # Exactly at the limit is fine, and the limit counts characters, not bytes.
    await ws.send(send(cid, "x" * 32000))
    await ws.expect("ack")
    await ws.send(json.dumps(send(cid, "\u00e9" * 32000, client_msg_id="accents"), ensure_ascii=False))
    assert (await ws.expect("ack"))["data"]["client_msg_id"] == "accents"
    data = await error_for(ws, json.dumps(send(cid, "\u00e9" * 32001), ensure_ascii=False), ref=None)
    assert data["code"] == "MESSAGE_TOO_LONG"


async def test_not_found_for_member_of_deleted_conversation(chatd, alice):
    bob, tb = await chatd.register("bob")
    bws = await chatd.ws(tb)
    conv = await chatd.conversation(alice["token"], title="doomed", member_ids=[bob["id"]])
    cid = conv["id"]
    assert (await bws.expect("conversation_updated"))["data"]["seq"] == 0
    status, _, _ = await chatd.request("DELETE", f"/api/v1/conversations/{cid}", alice["token"])
    assert status == 200
    upd = await bws.expect("conversation_updated")
    assert upd["data"]["conversation"]["deleted"] is True
    for frame in ({"type": "join_conversation", "data": {"conversation_id": cid}}, send(cid, "hello?"),
                  {"type": "typing_start", "data": {"conversation_id": cid}}):
        assert (await error_for(bws, frame))["code"] == "NOT_FOUND", frame
    assert count_messages(chatd, cid) == 0
    # A non-member asking for it still gets FORBIDDEN.
    _, tc = await chatd.register("carol")
    cws = await chatd.ws(tc)
    assert (await error_for(cws, {"type": "join_conversation", "data": {"conversation_id": cid}}))["code"] == \
        "FORBIDDEN"


async def test_stream_response_for_unknown_message_is_not_found(chatd, alice):
    data = await error_for(alice["ws"], {"type": "stream_response", "data": {
        "conversation_id": alice["cid"], "message_id": 424242, "assistant_id": "demo"}})
    assert data["code"] == "NOT_FOUND"


async def test_conflict_for_second_stream_response(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    await join(ws, cid)
    await ws.send(send(cid, "/echo " + LONG))
    msg_id = (await ws.expect("ack"))["data"]["message_id"]
    data = await error_for(ws, {"type": "stream_response", "data": {"conversation_id": cid, "message_id": msg_id,
                                                                    "assistant_id": "demo"}})
    assert data["code"] == "CONFLICT" and data["ref"] == "e"
    frames = await ws.collect_until("message_added", timeout=15)
    assert len([f for f in frames if f["type"] == "stream_start"]) == 1
    assert count_messages(chatd, cid) == 2
    # Once the reply has finished, asking again is allowed.
    await ws.send({"type": "stream_response", "data": {"conversation_id": cid, "message_id": msg_id,
                                                       "assistant_id": "demo"}, "ref": "again"})
    assert (await ws.expect("ack", where=lambda f: f["data"].get("ref") == "again"))["data"]["message_id"]


async def test_assistant_not_found(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    data = await error_for(ws, send(cid, "hi", assistant_id="no-such-bot", client_msg_id="a1"))
    assert data["code"] == "ASSISTANT_NOT_FOUND"
    assert count_messages(chatd) == 0
    await ws.send(send(cid, "/echo x"))
    msg_id = (await ws.expect("ack"))["data"]["message_id"]
    await ws.expect("conversation_updated", where=lambda f: f["data"]["seq"] == 2, timeout=10)  # reply stored
    data = await error_for(ws, {"type": "stream_response", "data": {"conversation_id": cid, "message_id": msg_id,
                                                                    "assistant_id": "no-such-bot"}})
    assert data["code"] == "ASSISTANT_NOT_FOUND"
    assert count_messages(chatd) == 2
    # REST too.
    status, body, _ = await chatd.request("POST", "/api/v1/conversations", alice["token"],
                                          body={"assistant_id": "no-such-bot"})
    assert status == 404 and body["error"]["code"] == "ASSISTANT_NOT_FOUND"


async def test_internal_error_from_a_plugin_is_contained(chatd, alice, caplog):
    ws, cid = alice["ws"], alice["cid"]
    data = await error_for(ws, send(cid, "kaboom", client_msg_id="b1"))
    assert data["code"] == "INTERNAL_ERROR" and data["ref"] == "e"
    assert "xyzzy" not in data["message"] and "RuntimeError" not in data["message"]
    assert count_messages(chatd) == 0
    assert "xyzzy" in caplog.text  # logged with its traceback
    # The next message goes through normally.
    await ws.send(send(cid, "/echo fine", client_msg_id="b2"))
    assert (await ws.expect("ack"))["data"]["client_msg_id"] == "b2"


@pytest.mark.parametrize("chatd_settings", [{"rate_messages": 3, "rate_window_s": 30}], indirect=True)
async def test_rate_limited_creates_nothing(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    for i in range(3):
        await ws.send(send(cid, f"/echo {i}", client_msg_id=f"ok{i}"))
        await ws.expect("ack")
    data = await error_for(ws, send(cid, "/echo too many", client_msg_id="over"))
    assert data["code"] == "RATE_LIMITED" and data["ref"] == "e"
    assert 0 < data["retry_after"] <= 30
    sql = sqlite3.connect(chatd.server.settings.db_path)
    try:
        assert sql.execute("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'over'").fetchone()[0] == 0
        assert sql.execute("SELECT COUNT(*) FROM messages WHERE message_type = 'user'").fetchone()[0] == 3
        assert sql.execute("SELECT last_seq FROM conversations WHERE id = ?", (cid,)).fetchone()[0] <= 6
    finally:
        sql.close()
    # A resend of an accepted message is not a new message: acked, not limited.
    await ws.send(send(cid, "/echo 0", client_msg_id="ok0"))
    assert (await ws.expect("ack"))["data"]["client_msg_id"] == "ok0"
    # The limit is per user: bob can still post.
    bob, tb = await chatd.register("bob")
    conv = await chatd.conversation(tb, title="bob's")
    bws = await chatd.ws(tb)
    await bws.send(send(conv["id"], "/echo mine"))
    await bws.expect("ack")


@pytest.mark.parametrize("chatd_settings", [{"max_concurrent_replies": 1}], indirect=True)
async def test_concurrent_replies_cap_is_rate_limited_and_creates_nothing(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    await join(ws, cid)
    await ws.send(send(cid, "/echo " + LONG))
    await ws.expect("ack")
    data = await error_for(ws, send(cid, "/echo second", client_msg_id="second"))
    assert data["code"] == "RATE_LIMITED" and data["retry_after"] > 0
    assert count_messages(chatd, cid) == 2  # the first message and its reply placeholder
    await ws.expect("message_added", timeout=15)
    await ws.send(send(cid, "/echo second", client_msg_id="second"))
    assert (await ws.expect("ack", where=lambda f: f["data"].get("client_msg_id") == "second"))


async def test_provider_unavailable_is_stream_error_and_socket_stays_usable(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    await join(ws, cid)
    await ws.send(send(cid, "/fail 0"))
    err = await ws.expect("stream_error", timeout=10)
    assert err["data"]["code"] == "PROVIDER_UNAVAILABLE"
    added = await ws.expect("message_added")
    assert added["data"]["message"]["status"] == "error"
    await ws.send(send(cid, "/echo next"))
    await ws.expect("stream_complete", timeout=10)


async def test_frame_over_max_frame_bytes_closes_1009(chatd, alice):
    ws = alice["ws"]
    limit = chatd.server.settings.max_frame_bytes
    await ws.send(send(alice["cid"], "y" * limit))
    code, _ = await ws.closed()
    assert code == 1009
    assert count_messages(chatd) == 0


@pytest.mark.parametrize("chatd_settings", [{"max_frame_bytes": 2000}], indirect=True)
async def test_configured_max_frame_bytes(chatd, alice):
    ws = alice["ws"]
    await ws.send({"type": "ping", "data": {"pad": "p" * 1500}})
    await ws.expect("pong")
    await ws.send({"type": "ping", "data": {"pad": "p" * 2100}})
    assert (await ws.closed())[0] == 1009


@pytest.mark.parametrize("chatd_settings", [{"max_frames_per_second": 10}], indirect=True)
async def test_frame_flood_closes_1008(chatd, alice):
    ws = alice["ws"]
    for _ in range(40):
        await ws.send({"type": "ping", "data": {}})
    code, _ = await ws.closed()
    assert code == 1008


BUGGY = {"providers": {"demo": {"tokens_per_second": 400}, "buggy": {"type": "buggy"}},
         "assistants": [{"id": "demo", "name": "Demo", "provider": "demo", "model": "demo", "default": True},
                        {"id": "buggy", "name": "Buggy", "provider": "buggy", "model": "b"}]}


@pytest.mark.parametrize("chatd_settings", [BUGGY], indirect=True)
async def test_provider_bug_is_provider_error_stream_error(chatd, alice, caplog):
    ws, cid = alice["ws"], alice["cid"]
    await join(ws, cid)
    await ws.send(send(cid, "hello", assistant_id="buggy"))
    frames = await ws.collect_until("message_added", timeout=10)
    err = [f["data"] for f in frames if f["type"] == "stream_error"]
    assert len(err) == 1 and err[0]["code"] == "PROVIDER_ERROR"
    assert "qwerty" not in err[0]["message"] and "KeyError" not in err[0]["message"]
    added = frames[-1]["data"]["message"]
    assert added["status"] == "error" and added["content"] == "partial text" and added["assistant_id"] == "buggy"
    assert "qwerty" in caplog.text
    # The default assistant still answers on the same socket.
    await ws.send(send(cid, "/echo still here"))
    done = await ws.expect("message_added", timeout=10)
    assert done["data"]["message"]["content"] == "still here"


@pytest.mark.parametrize("chatd_settings", [{"plugins": {"blocklist": {"words": ["forbidden phrase"],
                                                                        "reason": "house rules"}}}], indirect=True)
async def test_filtered_by_plugin_creates_nothing(chatd, alice):
    ws, cid = alice["ws"], alice["cid"]
    data = await error_for(ws, send(cid, "this has a Forbidden Phrase in it", client_msg_id="f1"))
    assert data["code"] == "FILTERED" and "house rules" in data["message"] and data["ref"] == "e"
    assert count_messages(chatd) == 0
    await ws.send(send(cid, "/echo this is fine", client_msg_id="f2"))
    assert (await ws.expect("ack"))["data"]["client_msg_id"] == "f2"


async def test_server_shutdown_closes_sockets_1001(chatd, alice):
    ws = alice["ws"]
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")
    await chatd.server.stop()
    code, _ = await ws.closed()
    assert code == 1001


@pytest.mark.asyncio
async def test_empty_content_and_overlong_client_msg_id_are_invalid(chatd):
    _, token = await chatd.register()
    conv = await chatd.conversation(token)
    ws = await chatd.ws(token)
    await ws.send({"type": "send_message", "ref": "e1",
                   "data": {"conversation_id": conv["id"], "content": "", "message_type": "user"}})
    err = await ws.expect("error")
    assert err["data"]["code"] == "INVALID_MESSAGE" and "data.content" in err["data"]["message"]
    assert err["data"]["ref"] == "e1"
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "hi",
                                                    "message_type": "user", "client_msg_id": "x" * 129}})
    err = await ws.expect("error")
    assert err["data"]["code"] == "INVALID_MESSAGE" and "data.client_msg_id" in err["data"]["message"]
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{conv['id']}/messages", token)
    assert body["messages"] == []
