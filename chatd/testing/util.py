"""Small test helpers: free ports, names, waiting, settings, HTTP calls, the test Redis."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from chatd.config import Settings, load_settings

#: The password the helpers register users with.
PASSWORD = "correct horse"

#: Big enough for any frame chatd sends (its own limit is far lower).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024



#: The Redis the tests use (scripts/ensure_redis.sh starts one on 127.0.0.1:6379 when none runs).
REDIS_URL = os.environ.get("CHATD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: The PostgreSQL server tests create their databases on (trust auth); CHATD_TEST_POSTGRES_URL overrides it.
POSTGRES_ADMIN_URL = os.environ.get("CHATD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_url(database: str) -> str:
    """The admin URL with another database name."""
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def delete_prefix(client: Any, prefix: str) -> None:
    """Delete every Redis key under a test's prefix."""
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
    if keys:
        await client.delete(*keys)


def free_port() -> int:
    """A loopback port nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "u") -> str:
    """A fresh username, unique across test runs sharing a data directory."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll a blocking predicate until it returns something truthy (returned); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def test_settings(tmp_path: Any, **overrides: Any) -> Settings:
    """Settings for a test server: a temp data dir, a free loopback port, a fast demo assistant."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "data_dir": str(tmp_path),
                              "providers": {"demo": {"tokens_per_second": 400}}}
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


test_settings.__test__ = False  # type: ignore[attr-defined]


# --- HTTP -------------------------------------------------------------------------------------------

def http_json(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """A blocking JSON request: (status, decoded body); HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else (b"" if method in ("POST", "PATCH") else None)
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"null")


async def ahttp(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """`http_json` in a thread, for tests on the event loop."""
    return await asyncio.to_thread(http_json, method, url, token, body)


async def register(base: str, name: str, password: str = PASSWORD) -> tuple[dict, str]:
    """Register a user on the server at `base` (e.g. `http://127.0.0.1:8080`); (user, access token)."""
    status, body = await ahttp("POST", f"{base}/api/v1/auth/register", body={"username": name, "password": password})
    assert status == 201, body
    return body["user"], body["access_token"]




def start_redis_server(port: int, *args: str) -> subprocess.Popen[bytes]:
    """A throwaway `redis-server` on 127.0.0.1:port (nothing saved), started and answering PING."""
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", *args], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")
