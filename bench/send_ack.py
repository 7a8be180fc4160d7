"""Benchmark: send→ack latency with many concurrent senders, as a ratio to a bare Tornado echo.

Each sender is its own user with its own conversation and socket, and sends `--messages` user
messages one after the other, each as soon as the previous one's `ack` arrived; chatd stores
every one (with its seq), acks it, announces it, and starts a demo reply, so acks are measured
while up to `--senders` replies stream. The baseline is the same client against
`bench/baseline_server.py` echoing each frame.

Run: `.venv/bin/python -m bench.send_ack [--senders 100] [--messages 20] [--tps 200]`.
The chatd under test is this tree's, or the one CHATD_TEST_SERVER_TREE names (an older checkout).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

from tornado.websocket import websocket_connect

from chatd.testing.process import use_server_tree

HERE = os.path.dirname(os.path.abspath(__file__))
LAST_RUN_S: list[float] = []  # wall time of each senders() run, for messages per second


@contextlib.contextmanager
def store_env(kind: str, data: str) -> Iterator[dict[str, str]]:
    """Settings for chatd on a store: SQLite in the data dir, a fresh PostgreSQL database (dropped
    afterwards), or a MongoDB-wire server (nx-27017, as the tests use; not a real MongoDB)."""
    if kind == "sqlite":
        yield {}
    elif kind == "postgres":
        name = f"chatd_bench_{os.getpid()}"
        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        subprocess.run(["psql", admin, "-q", "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
        try:
            yield {"CHATD_STORE": "postgres", "CHATD_STORE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}"}
        finally:
            subprocess.run(["psql", admin, "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                           capture_output=True)
    else:
        port = free_port()
        server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "nx-27017"), "--host", "127.0.0.1",
                                   "--port", str(port), "--data-dir", os.path.join(data, "nx")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 15
            while time.monotonic() < end:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield {"CHATD_STORE": "mongodb", "CHATD_STORE_URL": f"mongodb://127.0.0.1:{port}/chatd"}
        finally:
            server.terminate()
            server.wait(10)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 20) -> None:
    """Poll until the URL answers 200."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def senders(url: str, users: list[tuple[str, int]] | int, m: int) -> list[float]:
    """One socket per user (or `users` anonymous sockets for the echo), each sending m frames in turn;
    every round trip in seconds."""
    socks: list[tuple[object, tuple[str, int] | None]] = []
    for user in (users if isinstance(users, list) else [None] * users):
        ws = await websocket_connect(url, max_message_size=1 << 24)
        if user is not None:
            await ws.write_message(json.dumps({"type": "auth", "token": user[0]}))
            await ws.read_message()
        socks.append((ws, user))
    out: list[float] = []

    async def one(i: int, ws, user: tuple[str, int] | None) -> None:
        for j in range(m):
            ref = f"{i}:{j}"
            if user is None:
                frame = json.dumps({"echo": ref})
            else:
                frame = json.dumps({"type": "send_message", "ref": ref, "data": {
                    "conversation_id": user[1], "content": "/echo ok", "message_type": "user"}})
            t0 = time.perf_counter()
            await ws.write_message(frame)
            while True:  # the sidebar updates and the reply arrive too: read until our own answer
                text = await ws.read_message()
                if text is None:
                    raise RuntimeError("socket closed")
                if f'"{ref}"' in text:
                    if '"error"' in text:
                        raise RuntimeError(text)
                    break
            out.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, ws, user) for i, (ws, user) in enumerate(socks)))
    LAST_RUN_S.append(time.perf_counter() - t0)
    for ws, _ in socks:
        ws.close()  # type: ignore[attr-defined]
    return out


def call(base: str, path: str, body: dict, token: str | None = None) -> dict:
    """POST JSON to chatd; the JSON answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req) as r:
        return dict(json.loads(r.read()))


async def chatd_run(args: argparse.Namespace) -> list[float]:
    """Start chatd on the embedded defaults; one user and one conversation per sender; measure."""
    data = tempfile.mkdtemp(prefix="bench-ack-")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHATD_")},
           "CHATD_DATA_DIR": data, "CHATD_LOG_LEVEL": "WARNING", "CHATD_RATE_MESSAGES": "100000000",
           "CHATD_RATE_AUTH_ATTEMPTS": "100000", "CHATD_MAX_CONCURRENT_REPLIES": "100000",
           "CHATD_MAX_FRAMES_PER_SECOND": "100000", "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": str(args.tps)}
    with store_env(args.store, data) as extra:
        env.update(extra)
        return await _chatd_on(args, env, port)


async def _chatd_on(args: argparse.Namespace, env: dict[str, str], port: int) -> list[float]:
    proc = subprocess.Popen([sys.executable, "-m", "chatd", "serve", "--port", str(port)], env=env,
                            cwd=use_server_tree(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        users = []
        for i in range(args.senders):
            auth = call(base, "/api/v1/auth/register", {"username": f"s{i}", "password": "bench-password"})
            conv = call(base, "/api/v1/conversations", {"title": "bench"}, auth["access_token"])
            users.append((auth["access_token"], conv["conversation"]["id"]))
        return await senders(f"ws://127.0.0.1:{port}/api/v1/chat/ws", users, args.messages)
    finally:
        proc.terminate()
        proc.wait(20)


async def bare_run(args: argparse.Namespace) -> list[float]:
    """The same client against a bare Tornado echo."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "baseline_server.py"), str(port)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return await senders(f"ws://127.0.0.1:{port}/ws", args.senders, args.messages)
    finally:
        proc.terminate()
        proc.wait(20)


async def main() -> None:
    """Alternate bare and chatd runs; print p50/p99 of each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20, help="per sender")
    parser.add_argument("--tps", type=float, default=200.0, help="demo tokens per second (user messages)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--store", choices=["sqlite", "postgres", "mongodb"], default="sqlite",
                        help="mongodb runs against nx-27017 (a MongoDB-wire server on SQLite), not a real MongoDB")
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        bare = await bare_run(args)
        chatd = await chatd_run(args)
        print(f"run {run}: senders={args.senders} messages={args.messages} demo_tps={args.tps} store={args.store}")
        for (name, lat), wall in zip((("tornado-bare echo", bare), ("chatd send->ack", chatd)), LAST_RUN_S[-2:],
                                     strict=True):
            print(f"  {name:18} n={len(lat)} p50={pct(lat, 50):.2f}ms p99={pct(lat, 99):.2f}ms "
                  f"mean={1000 * statistics.fmean(lat):.2f}ms  {len(lat) / wall:,.0f}/s")
        print(f"  ratio chatd/bare: p50 x{pct(chatd, 50) / pct(bare, 50):.1f}, "
              f"p99 x{pct(chatd, 99) / pct(bare, 99):.1f}")


if __name__ == "__main__":
    asyncio.run(main())
