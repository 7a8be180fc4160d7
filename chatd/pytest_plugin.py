"""Pytest fixtures shared by chatd's tests and plugin authors: a running server and real clients."""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.websocket

from chatd.app import ChatdServer, start_server
from chatd.config import Settings, load_settings


class WSClient:
    """A real WebSocket client with helpers to wait for frames by type."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict] = []  # every frame received, in order
        self._unread: list[dict] = []

    async def send(self, frame: dict | str) -> None:
        """Send a frame (a dict is JSON-encoded)."""
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

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
            if frame["type"] == ftype and (where is None or where(frame)):
                return self._unread.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {ftype!r} frame within {timeout}s; got {[f['type'] for f in self._unread]}")
            frame = await self._read(left)
            if frame is None:
                raise AssertionError(f"socket closed ({self.close_code} {self.close_reason}) waiting for {ftype!r}")
            if frame["type"] == ftype and (where is None or where(frame)):
                return frame
            self._unread.append(frame)

    async def collect_until(self, ftype: str, timeout: float = 10.0,
                            where: Callable[[dict], bool] | None = None) -> list[dict]:
        """Every frame up to and including the first of a type (unread ones first)."""
        out: list[dict] = []
        while self._unread:
            frame = self._unread.pop(0)
            out.append(frame)
            if frame["type"] == ftype and (where is None or where(frame)):
                return out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {ftype!r} within {timeout}s; got {[f['type'] for f in out]}")
            frame = await self._read(left)
            if frame is None:
                raise AssertionError(f"socket closed ({self.close_code}) waiting for {ftype!r}")
            out.append(frame)
            if frame["type"] == ftype and (where is None or where(frame)):
                return out

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
        except asyncio.TimeoutError:
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


class ChatdTestClient:
    """REST and WebSocket access to a running chatd."""

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

    async def register(self, username: str | None = None, password: str = "correct horse") -> tuple[dict, str]:
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

    async def ws(self, token: str | None = None, origin: str | None = None) -> WSClient:
        """Open a socket; authenticate when given a token."""
        headers = {"Origin": origin} if origin else {}
        req = tornado.httpclient.HTTPRequest(self.ws_url, headers=headers)
        conn = await tornado.websocket.websocket_connect(req, max_message_size=16 * 1024 * 1024)
        client = WSClient(conn)
        self._sockets.append(client)
        if token is not None:
            await client.send({"type": "auth", "token": token})
            await client.expect("auth_success")
        return client

    def close(self) -> None:
        """Close every socket opened through this client."""
        for s in self._sockets:
            s.close()


def test_settings(tmp_path: Any, **overrides: Any) -> Settings:
    """Settings for a test server: a temp data dir, a free loopback port, a fast demo assistant."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "data_dir": str(tmp_path),
                              "providers": {"demo": {"tokens_per_second": 400}}}
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def chatd_settings(tmp_path: Any, request: pytest.FixtureRequest) -> Settings:
    """Settings for the `chatd` fixture: parametrize it indirectly with a dict of overrides."""
    return test_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def chatd_plugins() -> list[Any]:
    """Extra plugin objects to register in the `chatd` fixture's server."""
    return []


@pytest_asyncio.fixture
async def chatd(chatd_settings: Settings, chatd_plugins: list[Any]) -> AsyncIterator[ChatdTestClient]:
    """A running chatd on a free 127.0.0.1 port, and a client for it."""
    server = await start_server(chatd_settings, extra_plugins=chatd_plugins)
    client = ChatdTestClient(server)
    try:
        yield client
    finally:
        client.close()
        await server.stop()
