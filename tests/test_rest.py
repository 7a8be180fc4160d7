"""REST API v1 (PROTOCOL.md §8): accounts, assistants, conversations, messages, health, errors."""
from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from chatd.pytest_plugin import test_settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
def chatd_settings(tmp_path, request):
    """Per-test overrides through `@pytest.mark.parametrize("chatd_settings", [{...}], indirect=True)`."""
    return test_settings(tmp_path, **getattr(request, "param", {}))


def assert_error(status, body, headers, want_status, want_code):
    assert status == want_status, (status, body)
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"code", "message"}, body
    assert body["error"]["code"] == want_code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert headers.get("Content-Type", "").startswith("application/json")


def admin_token(chatd, user_id):
    secret = (Path(chatd.server.settings.data_dir) / "jwt_secret").read_text().strip()
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "iat": now, "exp": now + 600, "roles": ["admin"]}, secret,
                      algorithm="HS256")


# Accounts.

async def test_register_shape_and_token(chatd):
    status, body, _ = await chatd.request("POST", "/api/v1/auth/register",
                                          body={"username": "alice", "password": "correct horse"})
    assert status == 201
    assert set(body) == {"user", "access_token", "token_type", "expires_in"}
    assert body["user"]["username"] == "alice" and body["user"]["id"] is not None
    assert body["token_type"] == "bearer" and body["expires_in"] == chatd.server.settings.token_ttl_s
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(body["user"]["id"]) and claims["exp"] - claims["iat"] == body["expires_in"]
    status, me, _ = await chatd.request("GET", "/api/v1/me", body["access_token"])
    assert status == 200 and me == {"id": body["user"]["id"], "username": "alice", "roles": []}


async def test_register_name_taken_is_409(chatd):
    await chatd.register("alice")
    assert_error(*await chatd.request("POST", "/api/v1/auth/register",
                                      body={"username": "alice", "password": "another pass"}), 409, "CONFLICT")


async def test_register_validates_input(chatd):
    for body, field in (({"password": "correct horse"}, "username"), ({"username": "bob"}, "password"),
                        ({"username": "bob", "password": "short"}, "password"),
                        ({"username": "bad name!", "password": "correct horse"}, "username"),
                        ({"username": 5, "password": "correct horse"}, "username")):
        status, resp, headers = await chatd.request("POST", "/api/v1/auth/register", body=body)
        assert_error(status, resp, headers, 400, "INVALID_MESSAGE")
        assert field in resp["error"]["message"], resp
    assert_error(*await chatd.request("POST", "/api/v1/auth/register", raw_body="{nope"), 400, "INVALID_JSON")


@pytest.mark.parametrize("chatd_settings", [{"registration_enabled": False}], indirect=True)
async def test_registration_can_be_turned_off(chatd):
    assert_error(*await chatd.request("POST", "/api/v1/auth/register",
                                      body={"username": "alice", "password": "correct horse"}), 403, "FORBIDDEN")


async def test_login(chatd):
    user, _ = await chatd.register("alice", password="correct horse")
    status, body, _ = await chatd.request("POST", "/api/v1/auth/login",
                                          body={"username": "alice", "password": "correct horse"})
    assert status == 200
    assert body["user"] == {"id": user["id"], "username": "alice"}
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    status, me, _ = await chatd.request("GET", "/api/v1/me", body["access_token"])
    assert status == 200 and me["id"] == user["id"]


async def test_login_failure_is_the_same_for_unknown_user(chatd):
    await chatd.register("alice", password="correct horse")
    wrong = await chatd.request("POST", "/api/v1/auth/login", body={"username": "alice", "password": "wrong pass"})
    unknown = await chatd.request("POST", "/api/v1/auth/login", body={"username": "nobody", "password": "wrong pass"})
    assert_error(*wrong, 401, "UNAUTHORIZED")
    assert_error(*unknown, 401, "UNAUTHORIZED")
    assert wrong[1] == unknown[1]


async def test_unauthorized_without_or_with_bad_token(chatd):
    _, token = await chatd.register("alice")
    for path in ("/api/v1/me", "/api/v1/assistants", "/api/v1/conversations", "/api/v1/conversations/1",
                 "/api/v1/conversations/1/messages"):
        assert_error(*await chatd.request("GET", path), 401, "UNAUTHORIZED")
        assert_error(*await chatd.request("GET", path, "garbage.token.here"), 401, "UNAUTHORIZED")
        assert_error(*await chatd.request("GET", path, headers={"Authorization": f"Basic {token}"}), 401,
                     "UNAUTHORIZED")
        assert_error(*await chatd.request("GET", path, token[:-4] + "AAAA"), 401, "UNAUTHORIZED")
    assert_error(*await chatd.request("POST", "/api/v1/conversations", body={"title": "x"}), 401, "UNAUTHORIZED")
    now = int(time.time())
    secret = (Path(chatd.server.settings.data_dir) / "jwt_secret").read_text().strip()
    expired = jwt.encode({"sub": "1", "iat": now - 100, "exp": now - 10}, secret, algorithm="HS256")
    assert_error(*await chatd.request("GET", "/api/v1/me", expired), 401, "UNAUTHORIZED")


async def test_assistants(chatd):
    _, token = await chatd.register()
    status, body, _ = await chatd.request("GET", "/api/v1/assistants", token)
    assert status == 200
    demo = next(a for a in body["assistants"] if a["id"] == "demo")
    assert set(demo) >= {"id", "name", "provider", "model", "default"}
    assert demo["provider"] == "demo"
    assert sum(1 for a in body["assistants"] if a["default"]) == 1


# Conversations.

async def test_create_get_and_shape(chatd):
    alice, ta = await chatd.register("alice")
    bob, _ = await chatd.register("bob")
    status, body, _ = await chatd.request("POST", "/api/v1/conversations", ta,
                                          body={"title": "Plans", "assistant_id": "demo", "member_ids": [bob["id"]]})
    assert status == 201
    conv = body["conversation"]
    assert set(conv) >= {"id", "title", "owner_id", "member_ids", "assistant_id", "created_at", "updated_at"}
    assert conv["title"] == "Plans" and conv["owner_id"] == alice["id"] and conv["assistant_id"] == "demo"
    assert sorted(conv["member_ids"]) == sorted([alice["id"], bob["id"]])
    assert conv["created_at"].endswith("Z") and not conv.get("deleted")
    status, got, _ = await chatd.request("GET", f"/api/v1/conversations/{conv['id']}", ta)
    assert status == 200 and got["conversation"] == conv
    # Defaults: a title and the default assistant.
    status, body, _ = await chatd.request("POST", "/api/v1/conversations", ta, body={})
    assert status == 201 and body["conversation"]["title"] and body["conversation"]["assistant_id"] == "demo"
    assert body["conversation"]["member_ids"] == [alice["id"]]


async def test_create_validates(chatd):
    _, ta = await chatd.register("alice")
    assert_error(*await chatd.request("POST", "/api/v1/conversations", ta, body={"title": 5}), 400,
                 "INVALID_MESSAGE")
    assert_error(*await chatd.request("POST", "/api/v1/conversations", ta, body={"member_ids": [999999]}), 400,
                 "INVALID_MESSAGE")
    assert_error(*await chatd.request("POST", "/api/v1/conversations", ta, body={"assistant_id": "nope"}), 404,
                 "ASSISTANT_NOT_FOUND")
    assert_error(*await chatd.request("POST", "/api/v1/conversations", ta, raw_body="[1]"), 400, "INVALID_JSON")
    status, body, _ = await chatd.request("GET", "/api/v1/conversations", ta)
    assert body["conversations"] == []


async def test_list_newest_first_with_paging(chatd):
    _, ta = await chatd.register("alice")
    _, tb = await chatd.register("bob")
    await chatd.conversation(tb, title="bob's own")  # not listed for alice
    ids = [(await chatd.conversation(ta, title=f"c{i}"))["id"] for i in range(5)]
    status, body, _ = await chatd.request("GET", "/api/v1/conversations", ta)
    assert status == 200
    assert [c["id"] for c in body["conversations"]] == ids[::-1]
    status, page1, _ = await chatd.request("GET", "/api/v1/conversations?limit=2", ta)
    assert [c["id"] for c in page1["conversations"]] == ids[:2:-1]
    before = page1["conversations"][-1]["updated_at"]
    status, page2, _ = await chatd.request("GET", f"/api/v1/conversations?limit=2&before={before}", ta)
    assert [c["id"] for c in page2["conversations"]] == [ids[2], ids[1]]
    before = page2["conversations"][-1]["updated_at"]
    status, page3, _ = await chatd.request("GET", f"/api/v1/conversations?limit=2&before={before}", ta)
    assert [c["id"] for c in page3["conversations"]] == [ids[0]]
    # Renaming one moves it to the top.
    await chatd.request("PATCH", f"/api/v1/conversations/{ids[0]}", ta, body={"title": "bumped"})
    status, body, _ = await chatd.request("GET", "/api/v1/conversations?limit=1", ta)
    assert body["conversations"][0]["id"] == ids[0] and body["conversations"][0]["title"] == "bumped"
    assert_error(*await chatd.request("GET", "/api/v1/conversations?limit=abc", ta), 400, "INVALID_MESSAGE")


async def test_patch_rename_assistant_and_members(chatd):
    alice, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    conv = await chatd.conversation(ta, title="old")
    cid = conv["id"]
    assert_error(*await chatd.request("GET", f"/api/v1/conversations/{cid}", tb), 403, "FORBIDDEN")
    status, body, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta,
                                          body={"title": "new", "member_ids": [bob["id"]]})
    assert status == 200
    assert body["conversation"]["title"] == "new"
    assert sorted(body["conversation"]["member_ids"]) == sorted([alice["id"], bob["id"]])
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}", tb)
    assert status == 200 and body["conversation"]["title"] == "new"
    status, body, _ = await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"assistant_id": "demo"})
    assert status == 200 and body["conversation"]["assistant_id"] == "demo"
    assert_error(*await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={}), 400, "INVALID_MESSAGE")
    assert_error(*await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"title": ""}), 400,
                 "INVALID_MESSAGE")
    assert_error(*await chatd.request("PATCH", f"/api/v1/conversations/{cid}", ta, body={"assistant_id": "nope"}),
                 404, "ASSISTANT_NOT_FOUND")


async def test_delete(chatd):
    alice, ta = await chatd.register("alice")
    bob, tb = await chatd.register("bob")
    conv = await chatd.conversation(ta, title="bye", member_ids=[bob["id"]])
    cid = conv["id"]
    assert_error(*await chatd.request("DELETE", f"/api/v1/conversations/{cid}", tb), 403, "FORBIDDEN")
    status, body, _ = await chatd.request("DELETE", f"/api/v1/conversations/{cid}", ta)
    assert status == 200 and body["conversation"]["deleted"] is True
    for token in (ta, tb):
        assert_error(*await chatd.request("GET", f"/api/v1/conversations/{cid}", token), 404, "NOT_FOUND")
        assert_error(*await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", token), 404, "NOT_FOUND")
        status, body, _ = await chatd.request("GET", "/api/v1/conversations", token)
        assert cid not in [c["id"] for c in body["conversations"]]
    _, tc = await chatd.register("carol")
    assert_error(*await chatd.request("GET", f"/api/v1/conversations/{cid}", tc), 403, "FORBIDDEN")


async def test_forbidden_for_non_members_over_rest(chatd):
    _, ta = await chatd.register("alice")
    _, tb = await chatd.register("bob")
    cid = (await chatd.conversation(ta, title="private"))["id"]
    for method, path, body in (("GET", f"/api/v1/conversations/{cid}", None),
                               ("PATCH", f"/api/v1/conversations/{cid}", {"title": "mine now"}),
                               ("DELETE", f"/api/v1/conversations/{cid}", None),
                               ("GET", f"/api/v1/conversations/{cid}/messages", None),
                               ("GET", "/api/v1/conversations/987654", None),
                               ("GET", "/api/v1/conversations/987654/messages", None)):
        assert_error(*await chatd.request(method, path, tb, body=body), 403, "FORBIDDEN")
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}", ta)
    assert body["conversation"]["title"] == "private" and not body["conversation"].get("deleted")


async def test_messages_paging(chatd):
    alice, ta = await chatd.register("alice")
    cid = (await chatd.conversation(ta, title="log"))["id"]
    ws = await chatd.ws(admin_token(chatd, alice["id"]))
    for i in range(1, 7):  # system messages: stored, no AI reply, seq 1..6
        await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": f"m{i}",
                                                        "message_type": "system", "client_msg_id": f"s{i}"}})
        await ws.expect("ack")

    async def page(query=""):
        status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages{query}", ta)
        assert status == 200, body
        return [m["seq"] for m in body["messages"]], body["messages"]

    seqs, msgs = await page()
    assert seqs == [1, 2, 3, 4, 5, 6]
    m = msgs[0]
    assert m["content"] == "m1" and m["message_type"] == "system" and m["conversation_id"] == cid
    assert m["sender_id"] == alice["id"] and m["status"] == "complete" and m["client_msg_id"] == "s1"
    assert m["created_at"].endswith("Z")
    assert (await page("?limit=2"))[0] == [5, 6]
    assert (await page("?limit=2&before_seq=5"))[0] == [3, 4]
    assert (await page("?limit=2&before_seq=3"))[0] == [1, 2]
    assert (await page("?limit=2&before_seq=1"))[0] == []
    assert (await page("?after_seq=4"))[0] == [5, 6]
    assert (await page("?after_seq=1&before_seq=4"))[0] == [2, 3]
    assert (await page("?limit=2&after_seq=1"))[0] == [5, 6]
    status, body, headers = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages?before_seq=x", ta)
    assert_error(status, body, headers, 400, "INVALID_MESSAGE")
    assert "before_seq" in body["error"]["message"]


async def test_messages_include_assistant_replies(chatd):
    _, ta = await chatd.register("alice")
    cid = (await chatd.conversation(ta, title="t"))["id"]
    ws = await chatd.ws(ta)
    await ws.send({"type": "join_conversation", "data": {"conversation_id": cid}})
    await ws.expect("joined")
    await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo pong",
                                                    "message_type": "user"}})
    await ws.expect("message_added", timeout=10)
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{cid}/messages", ta)
    assert [(m["message_type"], m["content"], m["seq"]) for m in body["messages"]] == [
        ("user", "/echo pong", 1), ("assistant", "pong", 2)]
    reply = body["messages"][1]
    assert reply["status"] == "complete" and reply["sender_id"] is None and reply["assistant_id"] == "demo"
    assert reply["reply_to"] == body["messages"][0]["id"]
    assert set(reply["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


# Health, metrics, unknown paths.

async def test_healthz_and_readyz(chatd):
    status, body, _ = await chatd.request("GET", "/healthz")
    assert status == 200
    status, body, _ = await chatd.request("GET", "/readyz")
    assert status == 200
    assert body["store"] == "ok" and body["bus"] == "ok" and body["providers"]["demo"] == "ok"


async def test_readyz_503_names_the_failed_dependency(chatd):
    await chatd.server.store.close()  # its connections are gone: it can neither read nor write
    status, body, _ = await chatd.request("GET", "/readyz")
    assert status == 503 and body["store"] == "failed" and body["bus"] == "ok"


async def test_metrics_public_by_default(chatd):
    _, token = await chatd.register()
    ws = await chatd.ws(token)
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")
    status, text, headers = await chatd.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "chatd_ws_connections 1.0" in text
    assert 'chatd_ws_frames_in_total{type="ping"} 1.0' in text


@pytest.mark.parametrize("chatd_settings", [{"metrics_require_token": True}], indirect=True)
async def test_metrics_can_require_a_token(chatd):
    assert_error(*await chatd.request("GET", "/metrics"), 401, "UNAUTHORIZED")
    _, token = await chatd.register()
    status, text, _ = await chatd.request("GET", "/metrics", token)
    assert status == 200 and "chatd_ws_connections" in text


async def test_unknown_api_path_is_json_404(chatd):
    _, token = await chatd.register()
    assert_error(*await chatd.request("GET", "/api/v1/nope", token), 404, "NOT_FOUND")
    assert_error(*await chatd.request("GET", "/api/v2/conversations"), 404, "NOT_FOUND")


async def test_oversized_body_is_json_413(chatd):
    status, body, headers = await chatd.request("POST", "/api/v1/auth/login", raw_body="x" * (2 << 20))
    assert_error(status, body, headers, 413, "MESSAGE_TOO_LONG")


@pytest.mark.parametrize("chatd_settings", [{"rate_auth_attempts": 3, "rate_auth_window_s": 30}], indirect=True)
async def test_sign_in_attempts_are_rate_limited_per_address(chatd):
    await chatd.register("victim", "right password")
    for _ in range(2):
        status, _, _ = await chatd.request("POST", "/api/v1/auth/login",
                                           body={"username": "victim", "password": "wrong guess"})
        assert status == 401
    status, body, headers = await chatd.request("POST", "/api/v1/auth/login",
                                                body={"username": "victim", "password": "right password"})
    assert_error(status, body, headers, 429, "RATE_LIMITED")
    assert 1 <= int(headers["Retry-After"]) <= 30


async def test_conversation_cursor_with_before_id_never_skips_equal_timestamps(chatd):
    user, token = await chatd.register()
    ids = [(await chatd.conversation(token, title=f"c{i}"))["id"] for i in range(4)]
    # Give all four the same updated_at, as happens when they change in the same millisecond.
    await chatd.server.store.db.execute("UPDATE conversations SET updated_at = '2026-01-01T00:00:00.000Z'")
    seen, before, before_id = [], None, None
    for _ in range(4):
        query = "?limit=1" + (f"&before={before}&before_id={before_id}" if before else "")
        status, body, _ = await chatd.request("GET", "/api/v1/conversations" + query, token)
        assert status == 200
        if not body["conversations"]:
            break
        last = body["conversations"][-1]
        seen.append(last["id"])
        before, before_id = last["updated_at"], last["id"]
    assert seen == sorted(ids, reverse=True)
