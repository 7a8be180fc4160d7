"""WebSocket and REST clients of a running chatd, for tests on the event loop."""
# The waits take a `timeout` on purpose: a test states how long a frame may take.
# ruff: noqa: ASYNC109
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import tornado.httpclient
import tornado.websocket

from chatd.testing.util import MAX_MESSAGE_SIZE, PASSWORD

if TYPE_CHECKING:
    from chatd.app import ChatdServer
    from chatd.config import Settings



class WSClient:
    """A real WebSocket client with helpers to wait for frames by type."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict] = []  # every frame received, in order
        self._unread: list[dict] = []

    async def send(self, frame: dict | str) -> None:
        """Send a frame (a dict is JSON-encoded)."""
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    async def join(self, conversation_id: Any, since_seq: int | None = None, timeout: float = 5.0) -> dict:
        """Join a conversation and wait for `joined` (the frames replayed before it stay unread); the frame."""
        data: dict[str, Any] = {"conversation_id": conversation_id}
        if since_seq is not None:
            data["since_seq"] = since_seq
        await self.send({"type": "join_conversation", "data": data})
        return await self.expect("joined", timeout)

    async def recv(self, timeout: float = 5.0) -> dict | None:
        """The next frame, or None once the server closed the socket."""
        if self._unread:
            return self._unread.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict | None:
        text = await asyncio.wait_for(self.conn.read_message(), timeout)
        if text is None:
            return None
        frame = json.loads(text)
        self.frames.append(frame)
        return frame

    async def expect(self, ftype: str, timeout: float = 5.0, where: Callable[[dict], bool] | None = None) -> dict:
        """Wait for the next frame of a type (others are kept for later `recv`)."""
        for i, frame in enumerate(self._unread):
            if _is(frame, ftype, where):
                return self._unread.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await self._read_before(deadline, ftype, timeout, self._unread)
            if _is(got, ftype, where):
                return got
            self._unread.append(got)

    async def collect_until(self, ftype: str, timeout: float = 10.0,
                            where: Callable[[dict], bool] | None = None) -> list[dict]:
        """Every frame up to and including the first of a type (unread ones first)."""
        out: list[dict] = []
        while self._unread:
            frame = self._unread.pop(0)
            out.append(frame)
            if _is(frame, ftype, where):
                return out
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await self._read_before(deadline, ftype, timeout, out)
            out.append(got)
            if _is(got, ftype, where):
                return out

    async def _read_before(self, deadline: float, ftype: str, timeout: float, seen: list[dict]) -> dict:
        """The next frame; AssertionError once the deadline passed or the socket closed, waiting for `ftype`."""
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {ftype!r} frame within {timeout}s; got {[f['type'] for f in seen]}")
        frame = await self._read(left)
        if frame is None:
            raise AssertionError(f"socket closed ({self.close_code} {self.close_reason}) waiting for {ftype!r}")
        return frame

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Wait for the server to close; (code, reason)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("socket still open")
            if await self._read(left) is None:
                return self.close_code, self.close_reason

    async def quiet(self, seconds: float = 0.3) -> list[dict]:
        """Frames that arrive within `seconds` (for asserting nothing was sent)."""
        got = list(self._unread)
        self._unread.clear()
        try:
            while True:
                frame = await self._read(seconds)
                if frame is None:
                    break
                got.append(frame)
        except TimeoutError:
            pass
        return got

    @property
    def close_code(self) -> int | None:
        """The close code the server sent."""
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the server sent."""
        return self.conn.close_reason

    def close(self) -> None:
        """Close from the client side."""
        self.conn.close()


def _is(frame: dict, ftype: str, where: Callable[[dict], bool] | None) -> bool:
    """Whether a frame is of the type and passes the test."""
    return frame["type"] == ftype and (where is None or where(frame))


async def _open_ws(request: str | tornado.httpclient.HTTPRequest, token: str | None) -> WSClient:
    conn = await tornado.websocket.websocket_connect(request, max_message_size=MAX_MESSAGE_SIZE)
    client = WSClient(conn)
    if token is not None:
        await client.send({"type": "auth", "token": token})
        await client.expect("auth_success")
    return client


_open_clients: list[WSClient] = []


async def ws_connect(url: str, token: str | None = None) -> WSClient:
    """A WSClient for any chatd WebSocket URL, authenticated when given a token.

    The client is remembered until `close_ws_clients()` (the `ws_clients` fixture calls it).
    """
    client = await _open_ws(url, token)
    _open_clients.append(client)
    return client


def close_ws_clients() -> None:
    """Close every client `ws_connect` opened and has not closed yet (tornado warns about unclosed ones)."""
    while _open_clients:
        _open_clients.pop().close()


async def aclose_ws_clients(handshake_s: float = 0.2) -> None:
    """Close every open client, give the servers `handshake_s` to answer, then cut what is left.

    For tests that stop their servers themselves: a close frame nobody answers would leave the
    client's socket open until it is collected (a ResourceWarning in a later test).
    """
    clients = list(_open_clients)
    close_ws_clients()
    await asyncio.sleep(handshake_s)
    for ws in clients:
        stream = getattr(ws.conn, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()


class ChatdTestClient:
    """REST and WebSocket access to a chatd running in this process (`chatd.app.start_server`)."""

    def __init__(self, server: ChatdServer) -> None:
        self.server = server
        self.base = f"http://127.0.0.1:{server.port}"
        self.ws_url = f"ws://127.0.0.1:{server.port}/api/v1/chat/ws"
        self.http = tornado.httpclient.AsyncHTTPClient()
        self._sockets: list[WSClient] = []
        self._n = 0

    async def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                      headers: dict | None = None, raw_body: str | None = None) -> tuple[int, Any, dict]:
        """(status, JSON body or text, headers)."""
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = ""
        resp = await self.http.fetch(self.base + path, method=method, headers=hdrs, body=data,
                                     raise_error=False, allow_nonstandard_methods=True)
        text = resp.body.decode() if resp.body else ""
        try:
            payload: Any = json.loads(text) if text else None
        except ValueError:
            payload = text
        return resp.code, payload, dict(resp.headers)

    async def register(self, username: str | None = None, password: str = PASSWORD) -> tuple[dict, str]:
        """Register a fresh user; (user, token)."""
        if username is None:
            self._n += 1
            username = f"user{self._n}"
        status, body, _ = await self.request("POST", "/api/v1/auth/register",
                                             body={"username": username, "password": password})
        assert status == 201, body
        return body["user"], body["access_token"]

    async def conversation(self, token: str, **fields: Any) -> dict:
        """Create a conversation; returns it."""
        status, body, _ = await self.request("POST", "/api/v1/conversations", token, body=fields)
        assert status == 201, body
        return body["conversation"]

    async def joined(self, **conversation: Any) -> tuple[str, dict, WSClient]:
        """A fresh user's (token, new conversation, socket joined to it); `conversation` are its fields."""
        _, token = await self.register()
        conv = await self.conversation(token, **conversation)
        ws = await self.ws(token)
        await ws.join(conv["id"])
        return token, conv, ws

    async def ws(self, token: str | None = None, origin: str | None = None) -> WSClient:
        """Open a socket; authenticate when given a token."""
        headers = {"Origin": origin} if origin else {}
        client = await _open_ws(tornado.httpclient.HTTPRequest(self.ws_url, headers=headers), token)
        self._sockets.append(client)
        return client

    def close(self) -> None:
        """Close every socket opened through this client."""
        for s in self._sockets:
            s.close()




@contextlib.asynccontextmanager
async def serving(settings: Settings, **kw: Any) -> AsyncIterator[ChatdTestClient]:
    """A chatd started in this process on `settings` (`kw` as `start_server` takes), and a client of it."""
    from chatd.app import start_server

    server = await start_server(settings, **kw)
    client = ChatdTestClient(server)
    try:
        yield client
    finally:
        client.close()
        await server.stop()
