"""WebSocket authentication (PROTOCOL.md §2): tokens, origins, the auth timeout."""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
from pathlib import Path

import jwt
import pytest
import tornado.httpclient

from chatd.pytest_plugin import test_settings

pytestmark = pytest.mark.asyncio


@pytest.fixture
def chatd_settings(tmp_path, request):
    """Per-test setting overrides through `@pytest.mark.parametrize("chatd_settings", [{...}], indirect=True)`."""
    return test_settings(tmp_path, **getattr(request, "param", {}))


def secret_of(chatd) -> str:
    return (Path(chatd.server.settings.data_dir) / "jwt_secret").read_text().strip()


def claims_for(user_id, **extra):
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + 3600}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def auth_close(chatd, frame) -> tuple[int | None, str | None]:
    """Open a socket, send one first frame, return the close (code, reason)."""
    ws = await chatd.ws()
    await ws.send(frame)
    return await ws.closed()


async def auth_with(chatd, token) -> tuple[int | None, str | None]:
    return await auth_close(chatd, {"type": "auth", "token": token})


async def test_auth_success_shape(chatd):
    user, token = await chatd.register("alice")
    ws = await chatd.ws()
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
    await ws.send({"type": "auth", "token": token})
    frame = await ws.expect("auth_success")
    assert frame["user_id"] == user["id"]
    data = frame["data"]
    assert data["user_id"] == user["id"]
    assert isinstance(data["session_id"], str) and data["session_id"]
    assert data["heartbeat_s"] == chatd.server.settings.heartbeat_interval_s
    assert data["server_time"].endswith("Z")
    server_time = datetime.datetime.fromisoformat(data["server_time"].replace("Z", "+00:00"))
    assert server_time >= before
    # Two sockets get distinct sessions.
    ws2 = await chatd.ws()
    await ws2.send({"type": "auth", "token": token})
    assert (await ws2.expect("auth_success"))["data"]["session_id"] != data["session_id"]
    # The socket is usable.
    await ws.send({"type": "ping", "data": {"n": 1}})
    assert (await ws.expect("pong"))["data"] == {"n": 1}


async def test_token_at_data_token_is_accepted(chatd):
    user, token = await chatd.register("alice")
    ws = await chatd.ws()
    await ws.send({"type": "auth", "data": {"token": token}})
    assert (await ws.expect("auth_success"))["user_id"] == user["id"]


async def test_bad_signature_is_rejected(chatd):
    user, _ = await chatd.register("alice")
    forged = jwt.encode(claims_for(user["id"]), "x" * 64, algorithm="HS256")
    assert await auth_with(chatd, forged) == (4001, "Invalid token")


async def test_alg_none_is_rejected(chatd):
    user, _ = await chatd.register("alice")
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(user['id']))}."
    assert await auth_with(chatd, unsigned) == (4001, "Invalid token")
    # Even with the real signature appended, a header that says `none` is refused.
    real = jwt.encode(claims_for(user["id"]), secret_of(chatd), algorithm="HS256")
    substituted = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{real.split('.')[1]}.{real.split('.')[2]}"
    assert await auth_with(chatd, substituted) == (4001, "Invalid token")


async def test_other_hmac_algorithm_is_rejected_when_hs256_is_pinned(chatd):
    user, _ = await chatd.register("alice")
    secret = secret_of(chatd)
    # The same secret signs a valid HS256 token (control) ...
    good = jwt.encode(claims_for(user["id"]), secret, algorithm="HS256")
    ws = await chatd.ws()
    await ws.send({"type": "auth", "token": good})
    await ws.expect("auth_success")
    # ... but HS512 with that secret is algorithm substitution.
    assert await auth_with(chatd, jwt.encode(claims_for(user["id"]), secret, algorithm="HS512")) == (
        4001, "Invalid token")


async def test_expired_token_is_rejected(chatd):
    user, _ = await chatd.register("alice")
    now = int(time.time())
    expired = jwt.encode(claims_for(user["id"], iat=now - 7200, exp=now - 3600), secret_of(chatd), algorithm="HS256")
    assert await auth_with(chatd, expired) == (4001, "Token expired")


@pytest.mark.parametrize("missing", ["exp", "sub", "iat"])
async def test_required_claims(chatd, missing):
    user, _ = await chatd.register("alice")
    claims = claims_for(user["id"])
    del claims[missing]
    token = jwt.encode(claims, secret_of(chatd), algorithm="HS256")
    assert await auth_with(chatd, token) == (4001, "Invalid token")


async def test_garbage_and_missing_tokens(chatd):
    assert (await auth_with(chatd, "not.a.jwt"))[0] == 4001
    assert (await auth_with(chatd, ""))[0] == 4001
    assert (await auth_with(chatd, 12345))[0] == 4001
    assert await auth_close(chatd, {"type": "auth"}) == (4001, "Authentication required")


ISS_AUD = {"jwt_issuer": "https://id.example.test", "jwt_audience": "chatd-clients"}


@pytest.mark.parametrize("chatd_settings", [ISS_AUD], indirect=True)
async def test_issuer_and_audience_checked_when_configured(chatd):
    user, token = await chatd.register("alice")
    issued = jwt.decode(token, options={"verify_signature": False})
    assert issued["iss"] == ISS_AUD["jwt_issuer"] and issued["aud"] == ISS_AUD["jwt_audience"]
    ws = await chatd.ws()
    await ws.send({"type": "auth", "token": token})
    await ws.expect("auth_success")
    secret = secret_of(chatd)
    iss, aud = ISS_AUD["jwt_issuer"], ISS_AUD["jwt_audience"]
    for bad in (dict(iss="https://evil.test", aud=aud), dict(iss=iss, aud="someone-else"),
                dict(aud=aud), dict(iss=iss)):
        token = jwt.encode(claims_for(user["id"], **bad), secret, algorithm="HS256")
        assert await auth_with(chatd, token) == (4001, "Invalid token"), bad
        status, body, _ = await chatd.request("GET", "/api/v1/me", token)
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED", bad


async def test_first_frame_not_auth_closes_4001(chatd):
    _, token = await chatd.register("alice")
    assert await auth_close(chatd, {"type": "ping", "data": {}}) == (4001, "Authentication required")
    assert await auth_close(chatd, {"type": "join_conversation", "data": {"conversation_id": 1}, "token": token}) == (
        4001, "Authentication required")
    assert await auth_close(chatd, "this is not json") == (4001, "Authentication required")


@pytest.mark.parametrize("chatd_settings", [{"auth_timeout_s": 0.3}], indirect=True)
async def test_no_auth_frame_within_timeout_closes_4001(chatd):
    ws = await chatd.ws()
    loop_time = asyncio.get_running_loop().time
    start = loop_time()
    code, reason = await ws.closed(timeout=5)
    assert (code, reason) == (4001, "Authentication required")
    assert loop_time() - start >= 0.25


@pytest.mark.parametrize("chatd_settings", [{"auth_timeout_s": 0.3}], indirect=True)
async def test_authenticated_socket_outlives_auth_timeout(chatd):
    _, token = await chatd.register("alice")
    ws = await chatd.ws(token)
    assert await ws.quiet(0.6) == []
    await ws.send({"type": "ping", "data": {}})
    assert (await ws.expect("pong"))["data"] == {}


async def test_foreign_origin_gets_403_before_upgrade(chatd):
    with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
        await chatd.ws(origin="https://evil.example.com")
    assert exc.value.code == 403


async def test_same_host_origin_and_missing_origin_are_allowed(chatd):
    user, token = await chatd.register("alice")
    ws = await chatd.ws(token, origin=f"http://127.0.0.1:{chatd.server.port}")
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")
    ws2 = await chatd.ws(token)  # no Origin header at all (non-browser client)
    await ws2.send({"type": "ping", "data": {}})
    await ws2.expect("pong")


@pytest.mark.parametrize("chatd_settings", [{"allowed_origins": ["https://chat.example.com"]}], indirect=True)
async def test_configured_allowed_origins(chatd):
    _, token = await chatd.register("alice")
    ws = await chatd.ws(token, origin="https://chat.example.com")
    await ws.send({"type": "ping", "data": {}})
    await ws.expect("pong")
    for foreign in ("https://evil.example.com", "http://chat.example.com", "https://chat.example.com.evil.test"):
        with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
            await chatd.ws(origin=foreign)
        assert exc.value.code == 403, foreign


async def test_reauth_with_fresh_token_keeps_connection(chatd):
    user, token = await chatd.register("alice")
    _, other = await chatd.register("bob")
    ws = await chatd.ws(token)
    fresh = jwt.encode(claims_for(user["id"]), secret_of(chatd), algorithm="HS256")
    await ws.send({"type": "auth", "token": fresh, "ref": "r1"})
    assert (await ws.expect("ack"))["data"] == {"ref": "r1"}
    # A token of another user on an authenticated socket closes it.
    await ws.send({"type": "auth", "token": other})
    assert await ws.closed() == (4001, "Invalid token")


async def test_ws_token_of_rest_login_works(chatd):
    user, _ = await chatd.register("alice", password="correct horse")
    status, body, _ = await chatd.request("POST", "/api/v1/auth/login",
                                          body={"username": "alice", "password": "correct horse"})
    assert status == 200
    ws = await chatd.ws()
    await ws.send({"type": "auth", "token": body["access_token"]})
    assert (await ws.expect("auth_success"))["user_id"] == user["id"]

