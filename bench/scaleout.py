"""Benchmark: chatd over Redis with two processes, against one process in local mode.

Measures (all on 127.0.0.1): the latency of a message sent on process A until a client joined on
process B gets its `message_received`; the time a long reply takes to stream to a client on B;
and, with `--restart`, how long after a Redis restart (a throwaway redis-server on a free port)
fan-out works again. Run: `.venv/bin/python -m bench.scaleout [--messages 200] [--restart]`.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from chatd.testing import ServerProcess, WSClient, ahttp, free_port, register, unique_name, ws_connect

LONG = "x" * 4000


def env(bus: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {"CHATD_BUS": bus, "CHATD_LIMITER": bus, "CHATD_INFLIGHT": bus, "CHATD_REDIS_URL": redis_url,
            "CHATD_REDIS_PREFIX": prefix,
            "CHATD_RATE_MESSAGES": "1000000", "CHATD_MAX_CONCURRENT_REPLIES": "10000",
            "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "5000", "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "4",
            "CHATD_LOG_LEVEL": "WARNING"}


async def pair(a: ServerProcess, b: ServerProcess, name: str, title: str) -> tuple[Any, WSClient, WSClient]:
    """A new user's conversation, a socket on A to send to it, and one on B joined to it."""
    _, token = await register(a.base, name)
    _, body = await ahttp("POST", f"{a.base}/api/v1/conversations", token, {"title": title})
    cid = body["conversation"]["id"]
    sender = await ws_connect(a.ws_url, token)
    reader = await ws_connect(b.ws_url, token)
    await reader.join(cid)
    return cid, sender, reader


async def measure(a: ServerProcess, b: ServerProcess, n: int) -> dict:
    cid, sender, reader = await pair(a, b, unique_name(), "bench")
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        await sender.send({"type": "send_message", "data": {"conversation_id": cid, "content": f"m{i}",
                                                            "message_type": "user"}})
        await reader.expect("message_received", timeout=10)
        lat.append((time.perf_counter() - t0) * 1000)
        await reader.expect("message_added", timeout=10)
    t0 = time.perf_counter()
    await sender.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo " + LONG,
                                                        "message_type": "user"}})
    frames = await reader.collect_until("message_added", timeout=60,
                                        where=lambda f: f["data"]["message"]["message_type"] == "assistant")
    stream_s = time.perf_counter() - t0
    chunks = sum(1 for f in frames if f["type"] == "stream_content")
    sender.close()
    reader.close()
    lat.sort()
    return {"p50_ms": round(statistics.median(lat), 2), "p95_ms": round(lat[int(len(lat) * 0.95) - 1], 2),
            "long_reply_s": round(stream_s, 2), "chunks": chunks}


async def restart(tmp: Path) -> dict:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    a = b = None
    try:
        time.sleep(0.3)
        a = ServerProcess(tmp / "r", env("redis", url, "bench:")).start()
        b = ServerProcess(tmp / "r", env("redis", url, "bench:")).start()
        cid, sender, reader = await pair(a, b, "restart", "r")
        redis.terminate()
        redis.wait(10)
        down = time.perf_counter()
        await asyncio.sleep(1.0)
        redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        up = time.perf_counter()
        got_at = None
        for i in range(200):  # bounded: 20 s
            await sender.send({"type": "send_message", "data": {"conversation_id": cid, "content": f"after {i}",
                                                                "message_type": "user"}})
            try:
                await reader.expect("message_received", timeout=0.1)
                got_at = time.perf_counter()
                break
            except (TimeoutError, AssertionError):
                pass
        ready_at = None
        for _ in range(100):  # bounded: 10 s
            status, ready = await ahttp("GET", f"{b.base}/readyz")
            if status == 200:
                ready_at = time.perf_counter()
                break
            await asyncio.sleep(0.1)
        else:
            print(ready, b.log())
        sender.close()
        reader.close()
        return {"down_s": round(up - down, 2),
                "fanout_back_after_restart_s": round(got_at - up, 2) if got_at else None,
                "readyz_200_after_restart_s": round(ready_at - up, 2) if ready_at else None}
    finally:
        for s in (a, b):
            if s is not None:
                s.stop()
        redis.kill()
        redis.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chatd-bench-"))
    try:
        one = ServerProcess(tmp / "local", env("local", args.redis_url, "")).start()
        try:
            print("local, 1 process      ", await measure(one, one, args.messages))
        finally:
            one.stop()
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        a = ServerProcess(tmp / "redis", env("redis", args.redis_url, prefix)).start()
        b = ServerProcess(tmp / "redis", env("redis", args.redis_url, prefix)).start()
        try:
            print("redis, 1 process (A→A)", await measure(a, a, args.messages))
            print("redis, A → B          ", await measure(a, b, args.messages))
        finally:
            a.stop()
            b.stop()
        if args.restart and shutil.which("redis-server"):
            print("redis restart         ", await restart(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
