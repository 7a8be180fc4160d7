"""Benchmark: chatd's ping round trip and stream fan-out, as ratios to a bare Tornado server.

Both servers run as subprocesses of this one on 127.0.0.1; the client side is the same code
for both. For each message chatd sends every member connection two frames (message_received,
and conversation_updated for the sidebar, as PROTOCOL.md §4 requires) where the bare server
sends one; the frames/s figures show that. Run: `.venv/bin/python -m bench.ws_fanout [--clients 50] [--pings 2000]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado.websocket import websocket_connect

from chatd.testing import ServerProcess, free_port, http_json

HERE = os.path.dirname(os.path.abspath(__file__))


def make_admin(server: ServerProcess) -> str:
    """Create an admin account with the CLI (system messages need the role); its token."""
    server.cli("user", "create", "benchadmin", "--role", "admin", "--password-stdin", input="bench-admin-password\n")
    return server.cli("token", "benchadmin").stdout.strip()


def post(url: str, body: dict, token: str | None = None) -> dict:
    """POST JSON, return JSON."""
    status, payload = http_json("POST", url, token, body)
    assert status < 400, payload
    return payload


async def ping_rtt(url: str, n: int, make_ping, auth: dict | None) -> list[float]:
    """Sequential round trips on one socket, in seconds."""
    ws = await websocket_connect(url)
    if auth:
        await ws.write_message(json.dumps(auth))
        await ws.read_message()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await ws.write_message(make_ping(i))
        await ws.read_message()
        out.append(time.perf_counter() - t0)
    ws.close()
    return out


async def drain_until(ws, stop_type: str) -> int:
    """Read frames until one of stop_type; the number of stream_content frames seen."""
    n = 0
    while True:
        msg = await asyncio.wait_for(ws.read_message(), 60)
        if msg is None:
            raise RuntimeError("socket closed")
        t = json.loads(msg)["type"]
        if t == "stream_content":
            n += 1
        elif t == stop_type:
            return n


async def count_until(ws, ftype: str, n: int) -> int:
    """Read until n frames of a type have arrived; how many frames were read in all."""
    seen = frames = 0
    while seen < n:
        msg = await asyncio.wait_for(ws.read_message(), 60)
        if msg is None:
            raise RuntimeError("socket closed")
        frames += 1
        if json.loads(msg)["type"] == ftype:
            seen += 1
    return frames


async def bench_baseline(port: int, clients: int, frames: int, size: int, pings: int, messages: int) -> dict:
    """Figures for the bare Tornado server."""
    url = f"ws://127.0.0.1:{port}/ws"
    rtt = await ping_rtt(url, pings, lambda i: json.dumps({"type": "ping", "data": {"i": i}}), None)
    socks = [await websocket_connect(url) for _ in range(clients)]
    t0 = time.perf_counter()
    await socks[0].write_message(json.dumps({"fanout": frames, "size": size}))
    counts = await asyncio.gather(*(drain_until(s, "done") for s in socks))
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(messages):
        await socks[i % clients].write_message(json.dumps({"broadcast": {"content": f"message {i}"}}))
    msg_frames = sum(await asyncio.gather(*(count_until(s, "message_received", messages) for s in socks)))
    msg_elapsed = time.perf_counter() - t0
    for s in socks:
        s.close()
    return {"rtt": rtt, "fanout_s": elapsed, "frames": sum(counts), "messages_s": msg_elapsed, "msg_frames": msg_frames}


async def bench_chatd(port: int, clients: int, frames: int, size: int, pings: int, messages: int,
                      admin_token: str) -> dict:
    """Figures for chatd: app-level ping/pong, and one /echo reply streamed to every joiner."""
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/api/v1/chat/ws"
    token = post(base + "/api/v1/auth/register", {"username": "bench", "password": "bench-password"})["access_token"]
    admin_id = http_json("GET", base + "/api/v1/me", admin_token)[1]["id"]
    conv = post(base + "/api/v1/conversations", {"title": "bench", "member_ids": [admin_id]}, token)["conversation"]
    auth = {"type": "auth", "token": token}
    rtt = await ping_rtt(url, pings, lambda i: json.dumps({"type": "ping", "data": {"i": i}}), auth)
    socks = []
    for _ in range(clients):
        ws = await websocket_connect(url)
        await ws.write_message(json.dumps(auth))
        await ws.read_message()
        await ws.write_message(json.dumps({"type": "join_conversation", "data": {"conversation_id": conv["id"]}}))
        while json.loads(await ws.read_message())["type"] != "joined":
            pass
        socks.append(ws)
    text = "y" * (frames * size)
    t0 = time.perf_counter()
    await socks[0].write_message(json.dumps({"type": "send_message", "data": {
        "conversation_id": conv["id"], "content": "/echo " + text, "message_type": "user"}}))
    counts = await asyncio.gather(*(drain_until(s, "message_added") for s in socks))
    elapsed = time.perf_counter() - t0
    # Messages: stored (a seq each, SQLite), acked, and fanned out; system messages start no reply.
    admin = await websocket_connect(url)
    await admin.write_message(json.dumps({"type": "auth", "token": admin_token}))
    await admin.read_message()
    t0 = time.perf_counter()
    for i in range(messages):
        await admin.write_message(json.dumps({"type": "send_message", "data": {
            "conversation_id": conv["id"], "content": f"message {i}", "message_type": "system"}}))
    msg_frames = sum(await asyncio.gather(*(count_until(s, "message_received", messages) for s in socks)))
    msg_elapsed = time.perf_counter() - t0
    admin.close()
    for s in socks:
        s.close()
    return {"rtt": rtt, "fanout_s": elapsed, "frames": sum(counts), "messages_s": msg_elapsed, "msg_frames": msg_frames}


def pct(values: list[float], p: float) -> float:
    """The p-th percentile in milliseconds."""
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def run(args: argparse.Namespace) -> None:
    """Start both servers, measure, print."""
    procs = []
    server: ServerProcess | None = None
    try:
        bport = free_port()
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "baseline_server.py"), str(bport)],
                                      stdout=subprocess.PIPE))
        procs[-1].stdout.readline()
        env = dict(CHATD_LOG_LEVEL="WARNING", CHATD_RATE_MESSAGES="1000",
                   CHATD_MAX_FRAMES_PER_SECOND="100000", CHATD_COALESCE_MS=str(args.coalesce_ms),
                   CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND=str(args.tps),
                   CHATD_PROVIDERS__DEMO__ECHO_CHUNK=str(args.size))
        server = ServerProcess(Path(tempfile.mkdtemp(prefix="chatd-bench-")), env, drop_env=()).start()
        cport = server.port
        admin_token = make_admin(server)
        base = await bench_baseline(bport, args.clients, args.frames, args.size, args.pings, args.messages)
        chatd = await bench_chatd(cport, args.clients, args.frames, args.size, args.pings, args.messages,
                                  admin_token)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if server is not None:
            server.stop(signal.SIGTERM, timeout=10)
    print(f"clients={args.clients} pings={args.pings} reply={args.frames}x{args.size}B demo_tps={args.tps} "
          f"coalesce_ms={args.coalesce_ms}")
    for name, r in (("tornado-bare", base), ("chatd", chatd)):
        fps = r["frames"] / r["fanout_s"]
        print(f"{name:13s} ping p50={pct(r['rtt'], 50):.3f}ms p99={pct(r['rtt'], 99):.3f}ms  "
              f"fanout: {r['frames']} stream frames in {r['fanout_s']*1000:.0f}ms = {fps:,.0f} frames/s")
    for name, r in (("tornado-bare", base), ("chatd", chatd)):
        print(f"{name:13s} messages: {args.messages} to {args.clients} clients in {r['messages_s']*1000:.0f}ms "
              f"= {args.messages / r['messages_s']:,.0f} msg/s; {r['msg_frames']} frames received "
              f"= {r['msg_frames'] / r['messages_s']:,.0f} frames/s")
    print(f"ratio chatd/bare: ping p50 x{pct(chatd['rtt'], 50) / pct(base['rtt'], 50):.2f}, "
          f"fan-out throughput x{(chatd['frames'] / chatd['fanout_s']) / (base['frames'] / base['fanout_s']):.2f}, "
          f"message throughput x{base['messages_s'] / chatd['messages_s']:.2f}")


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=200, help="chunks in the streamed reply")
    parser.add_argument("--size", type=int, default=16, help="characters per chunk")
    parser.add_argument("--tps", type=float, default=100000, help="demo tokens per second")
    parser.add_argument("--messages", type=int, default=500, help="messages sent to the conversation")
    parser.add_argument("--coalesce-ms", type=float, default=0.0,
                        help="chatd's coalescing window; 0 sends one frame per delta, like the baseline")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
