"""Helpers for the delivery-guarantee tests: a scripted provider, a raw socket WebSocket client,
and a real `chatd serve` subprocess."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from chatd import hookimpl
from chatd.providers import Completion, CompletionRequest, Provider, Usage

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# --- A provider the test scripts and observes -------------------------------------------------

class ScriptedProvider(Provider):
    """Yields `deltas` (from the test) with `delay` seconds between them; records what happened."""

    type_name = "scripted"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.deltas: list[str] = list(config.get("deltas", ["a", "b", "c"]))
        self.delay: float = float(config.get("delay", 0.0))
        self.fail_after: int | None = config.get("fail_after")
        self.started = 0
        self.cancelled = 0  # CancelledError seen inside the generator
        self.closed = 0  # GeneratorExit seen (aclose)
        self.finished = 0  # ran to the end
        self.yielded = 0

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        self.started += 1
        try:
            for i, d in enumerate(self.deltas):
                if self.fail_after is not None and i >= self.fail_after:
                    from chatd.errors import ProviderUnavailable
                    raise ProviderUnavailable("scripted failure")
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.yielded += 1
                yield d
            completion.usage = Usage(prompt_tokens=1, completion_tokens=len(self.deltas))
            completion.finish_reason = "stop"
            self.finished += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except GeneratorExit:
            self.closed += 1
            raise


class ScriptedPlugin:
    """A plugin object registering the `scripted` provider type; keeps the instances it made."""

    def __init__(self) -> None:
        self.instances: list[ScriptedProvider] = []

    @hookimpl
    def register_providers(self, register: Callable) -> None:
        def factory(config: dict[str, Any]) -> ScriptedProvider:
            p = ScriptedProvider(config)
            self.instances.append(p)
            return p

        register("scripted", factory)

    @property
    def provider(self) -> ScriptedProvider:
        return self.instances[-1]


def scripted_settings(deltas: list[str] | None = None, delay: float = 0.0, **extra: Any) -> dict[str, Any]:
    """Settings overrides: a `scripted` assistant (default) plus the demo one."""
    conf: dict[str, Any] = {"delay": delay}
    if deltas is not None:
        conf["deltas"] = deltas
    return {
        "providers": {"scripted": conf, "demo": {"tokens_per_second": 400}},
        "assistants": [
            {"id": "scripted", "name": "Scripted", "provider": "scripted", "model": "x", "default": True},
            {"id": "demo", "name": "Demo", "provider": "demo", "model": "demo"},
        ],
        **extra,
    }


# --- Raw WebSocket over a plain socket ----------------------------------------------------------

class RawWS:
    """A hand-made WebSocket client on a blocking socket: it reads only when told to."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /api/v1/chat/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("handshake failed")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    def send(self, obj: dict) -> None:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (blocking)."""
        b1, b2 = self._need(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        return b1 & 0x0F, self._need(n)

    def recv_json(self, ftype: str | None = None) -> dict:
        """The next text frame (of a type), skipping pings."""
        while True:
            op, payload = self.recv_frame()
            if op == 1:
                frame = json.loads(payload)
                if ftype is None or frame["type"] == ftype:
                    return frame
            elif op == 8:
                raise ConnectionError(f"close frame {payload[:2]!r}")

    def auth(self, token: str) -> None:
        self.send({"type": "auth", "token": token})
        assert self.recv_json("auth_success")

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close abruptly (RST)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


# --- A real `chatd serve` process -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m chatd serve` on 127.0.0.1:<free port> with env overrides."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHATD_")}
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"server-{self.port}-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "chatd", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=str(REPO), env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatd exited {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"chatd did not start: {self.log()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/chat/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def term(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


def http_json(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """Blocking JSON request (for subprocess servers)."""
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PATCH") else None)
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def ahttp(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(http_json, method, url, token, body)


async def register(base: str, name: str) -> tuple[dict, str]:
    status, body = await ahttp("POST", f"{base}/api/v1/auth/register", body={"username": name,
                                                                              "password": "correct horse"})
    assert status == 201, body
    return body["user"], body["access_token"]


_OPEN_CLIENTS: list = []


@pytest_asyncio.fixture
async def ws_clients():
    """Close the clients `ws_connect` opened (tornado warns about unclosed ones)."""
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()
    await asyncio.sleep(0.01)


async def ws_connect(url: str, token: str | None = None):
    """A WSClient (from chatd's pytest plugin) for any URL."""
    import tornado.websocket

    from chatd.pytest_plugin import WSClient

    conn = await tornado.websocket.websocket_connect(url, max_message_size=16 * 1024 * 1024)
    client = WSClient(conn)
    _OPEN_CLIENTS.append(client)
    if token is not None:
        await client.send({"type": "auth", "token": token})
        await client.expect("auth_success")
    return client
