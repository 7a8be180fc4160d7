"""REST input limits, checked where bodies and query arguments are decoded (issue 11, the REST half).

Nesting depth, 64-bit integers, valid Unicode, oversized bodies, `member_ids`: each answers its
documented code (never 500), stores nothing, and logs no traceback.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest

from chatd.web.schemas import MAX_MEMBER_IDS

pytestmark = pytest.mark.asyncio

DEEP = 5000  # far past any recursion limit


@pytest.fixture(autouse=True)
def no_tracebacks(caplog):
    """Every test here: nothing logged with a traceback, nothing at ERROR."""
    with caplog.at_level(logging.INFO):
        yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def assert_error(answer, status, code, field=None):
    got_status, body, headers = answer
    assert got_status == status, answer
    assert headers["Content-Type"].startswith("application/json"), answer
    assert body["error"]["code"] == code, answer
    if field is not None:
        assert f"`{field}`" in body["error"]["message"], answer


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


async def titles(chatd, token):
    status, body, _ = await chatd.request("GET", "/api/v1/conversations", token)
    assert status == 200
    return [c["title"] for c in body["conversations"]]


async def test_deep_json_is_invalid_json_on_every_body(chatd):
    _, token = await chatd.register("alice")
    cid = (await chatd.conversation(token, title="kept"))["id"]
    for depth in (65, DEEP):
        for method, path, tok, raw in (
                ("POST", "/api/v1/auth/register", None, nested(depth)),
                ("POST", "/api/v1/auth/login", None, f'{{"username": {nested(depth)}, "password": "x"}}'),
                ("POST", "/api/v1/conversations", token, f'{{"title": "t", "x": {nested(depth)}}}'),
                ("PATCH", f"/api/v1/conversations/{cid}", token, f'{{"title": {nested(depth, chr(34) * 2)}}}'),
                ("POST", "/api/v1/conversations", token, '{"a":' * depth + "1" + "}" * depth)):
            assert_error(await chatd.request(method, path, tok, raw_body=raw), 400, "INVALID_JSON")
    # 64 levels is within the limit: the unknown field is ignored, as every unknown field is.
    status, _, _ = await chatd.request("POST", "/api/v1/conversations", token,
                                       raw_body=f'{{"title": "deep", "x": {nested(63)}}}')
    assert status == 201
    assert await titles(chatd, token) == ["deep", "kept"]


async def test_integers_beyond_64_bits_are_invalid_message_naming_the_field(chatd):
    _, token = await chatd.register("alice")
    cid = (await chatd.conversation(token, title="t"))["id"]
    for big in (2**63, -(2**63) - 1, 10**30):
        raw = f'{{"member_ids": [{big}]}}'
        assert_error(await chatd.request("POST", "/api/v1/conversations", token, raw_body=raw),
                     400, "INVALID_MESSAGE", "member_ids[0]")
        assert_error(await chatd.request("PATCH", f"/api/v1/conversations/{cid}", token, raw_body=raw),
                     400, "INVALID_MESSAGE", "member_ids[0]")
        assert_error(await chatd.request("POST", "/api/v1/auth/login", raw_body=f'{{"username": {big}}}'),
                     400, "INVALID_MESSAGE", "username")
        for path, arg in ((f"/api/v1/conversations/{cid}/messages?before_seq={big}", "before_seq"),
                          (f"/api/v1/conversations/{cid}/messages?after_seq={big}", "after_seq"),
                          (f"/api/v1/conversations/{cid}/messages?limit={big}", "limit"),
                          (f"/api/v1/conversations?limit={big}", "limit")):
            assert_error(await chatd.request("GET", path, token), 400, "INVALID_MESSAGE", arg)
        # A path id that big names no conversation: the answer of any conversation one is not a member of.
        assert_error(await chatd.request("GET", f"/api/v1/conversations/{big}", token), 403, "FORBIDDEN")
        assert_error(await chatd.request("DELETE", f"/api/v1/conversations/{big}", token), 403, "FORBIDDEN")
    # The bounds themselves are integers like any other.
    status, body, _ = await chatd.request(
        "GET", f"/api/v1/conversations/{cid}/messages?before_seq={2**63 - 1}&after_seq={-(2**63)}", token)
    assert status == 200 and body == {"messages": []}


async def test_lone_surrogates_are_invalid_message_and_store_nothing(chatd):
    _, token = await chatd.register("alice")
    cid = (await chatd.conversation(token, title="kept"))["id"]
    for method, path, tok, raw, field in (
            ("POST", "/api/v1/auth/register", None, '{"username": "\\ud800", "password": "correct horse"}', "username"),
            ("POST", "/api/v1/auth/register", None, '{"username": "bob", "password": "correct \\udfff horse"}',
             "password"),
            ("POST", "/api/v1/auth/login", None, '{"username": "alice", "password": "\\ud800\\ud800\\ud800x"}',
             "password"),
            ("POST", "/api/v1/auth/login", None, '{"username": "al\\udc00ice", "password": "correct horse"}',
             "username"),
            ("POST", "/api/v1/conversations", token, '{"title": "\\ud800"}', "title"),
            ("PATCH", f"/api/v1/conversations/{cid}", token, '{"title": "x\\udbff"}', "title"),
            ("POST", "/api/v1/conversations", token, '{"title": "ok", "\\ud800": 1}', "$")):
        assert_error(await chatd.request(method, path, tok, raw_body=raw), 400, "INVALID_MESSAGE", field)
    assert await titles(chatd, token) == ["kept"]
    # A surrogate pair is a character like any other.
    status, body, _ = await chatd.request("POST", "/api/v1/conversations", token,
                                          raw_body='{"title": "\\ud83d\\ude00"}')
    assert status == 201 and body["conversation"]["title"] == "\U0001F600"


async def test_odd_path_ids_and_query_text_are_4xx(chatd):
    _, token = await chatd.register("alice")
    for path in ("/api/v1/conversations/%C2%B2", "/api/v1/conversations/%C2%B2/messages",
                 "/api/v1/conversations/%D9%A1", "/api/v1/conversations/1%00", "/api/v1/conversations/-1"):
        assert_error(await chatd.request("GET", path, token), 403, "FORBIDDEN")
    assert_error(await chatd.request("GET", "/api/v1/conversations/%ED%A0%80", token), 400, "INVALID_MESSAGE")
    for query, arg in (("limit=%C2%B2", "limit"), ("limit=%D9%A1", "limit"), ("limit=0", "limit"),
                       ("limit=1x", "limit"), ("before=%ED%A0%80", "before")):
        assert_error(await chatd.request("GET", f"/api/v1/conversations?{query}", token), 400, "INVALID_MESSAGE")
        assert arg in (await chatd.request("GET", f"/api/v1/conversations?{query}", token))[1]["error"]["message"]


async def test_member_ids_are_typed_capped_and_looked_up_in_one_read(chatd):
    alice, token = await chatd.register("alice")
    bob, _ = await chatd.register("bob")
    for ids, field in (([True], "member_ids[0]"), ([bob["id"], 1.5], "member_ids[1]"), ([None], "member_ids[0]"),
                       ([[bob["id"]]], "member_ids[0]"), ([""], "member_ids[0]"), ({"0": 1}, "member_ids"),
                       ([bob["id"]] * (MAX_MEMBER_IDS + 1), "member_ids")):
        assert_error(await chatd.request("POST", "/api/v1/conversations", token, body={"member_ids": ids}),
                     400, "INVALID_MESSAGE", field)
    assert await titles(chatd, token) == []

    store = chatd.server.store
    calls = {"missing_users": 0, "get_user": 0}

    def counting(name):
        real = getattr(store, name)

        def counted(*args):
            calls[name] += 1
            return real(*args)
        return counted

    for name in calls:
        setattr(store, name, counting(name))
    many = [bob["id"]] * (MAX_MEMBER_IDS - 1) + [alice["id"]]
    status, body, _ = await chatd.request("POST", "/api/v1/conversations", token, body={"member_ids": many})
    assert status == 201 and sorted(body["conversation"]["member_ids"]) == sorted([alice["id"], bob["id"]])
    assert calls == {"missing_users": 1, "get_user": 0}
    unknown = list(range(10**6, 10**6 + MAX_MEMBER_IDS))
    assert_error(await chatd.request("PATCH", f"/api/v1/conversations/{body['conversation']['id']}", token,
                                     body={"member_ids": unknown}), 400, "INVALID_MESSAGE", "member_ids")
    assert calls == {"missing_users": 2, "get_user": 0}


async def test_a_trailing_newline_is_not_part_of_a_valid_username(chatd):
    assert_error(await chatd.request("POST", "/api/v1/auth/register",
                                     body={"username": "alice\n", "password": "correct horse"}),
                 400, "INVALID_MESSAGE", "username")


async def test_wrong_method_is_405_with_allow(chatd):
    _, token = await chatd.register("alice")
    status, body, headers = await chatd.request("PUT", "/api/v1/conversations", token, body={})
    assert status == 405 and body["error"]["code"] == "INVALID_MESSAGE"
    assert headers["Allow"] == "GET, POST"
    status, _, headers = await chatd.request("POST", "/api/v1/conversations/1", token, body={})
    assert status == 405 and headers["Allow"] == "GET, PATCH, DELETE"


# Oversized bodies: a JSON 413 whichever way the body comes, and the server still serves.

def _urllib_post(url: str, data: bytes) -> tuple[int, dict]:
    """A client that sends its whole body before it reads anything."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _chunked_post(port: int, path: str, size: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("POST", path, body=(b"x" * 65536 for _ in range(size // 65536)), encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _declare_only(port: int, length: int, expect: bool) -> tuple[bytes, bytes]:
    """Send only the head of a request declaring `length` body bytes; the answer's head and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = (f"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                + ("Expect: 100-continue\r\n" if expect else "") + "\r\n")
        s.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return head_bytes, body


async def test_oversized_bodies_get_a_json_413(chatd):
    url = chatd.base + "/api/v1/auth/login"
    for size in (2 << 20, 9 << 20):
        status, body = await asyncio.to_thread(_urllib_post, url, b"x" * size)
        assert status == 413 and body["error"]["code"] == "MESSAGE_TOO_LONG", body
    status, body = await asyncio.to_thread(_chunked_post, chatd.server.port,
                                           "/api/v1/conversations", 3 << 20)
    assert status == 413 and body["error"]["code"] == "MESSAGE_TOO_LONG"
    # Declared too long and waiting for "100 Continue", or too long to read at all: answered at once.
    for length, expect in ((9 << 20, True), (1 << 40, False)):
        head, body = await asyncio.to_thread(_declare_only, chatd.server.port, length, expect)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert json.loads(body)["error"]["code"] == "MESSAGE_TOO_LONG"
    status, body, _ = await chatd.request("GET", "/healthz")
    assert status == 200
    _, token = await chatd.register("alice")
    status, _, _ = await chatd.request("POST", "/api/v1/conversations", token, body={"title": "x" * 100})
    assert status == 201
