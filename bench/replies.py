"""Benchmark: many concurrent AI replies, each watched by one socket, in one process or across two.

chatd: `--replies` conversations, each with one joined watcher socket and one sender socket;
every sender sends `/echo <text>` at once, so the demo provider streams `--tokens` tokens of
`--chunk` characters into every conversation as fast as it can. With `--procs 2` the replies run
on process A and the watchers are on process B (Redis bus, limiter and in-flight state). The
figure is tokens delivered per second (characters received / chunk size) until every watcher
has its `message_added`; frames per second shows the effect of coalescing. With Redis, the
bytes Redis received per reply (INFO `total_net_input_bytes`) are printed too.

Baseline: the same number of sockets on `bench/baseline_server.py`, which writes `--tokens`
frames to every socket, one frame per token: frames per second.

Run: `.venv/bin/python -m bench.replies [--replies 100] [--tokens 2000] [--procs 1|2] [--coalesce-ms 15]`.
The chatd under test is this tree's, or the one CHATD_TEST_SERVER_TREE names (an older checkout).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from tornado.websocket import websocket_connect

from chatd.testing.process import use_server_tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from send_ack import call, free_port, wait_http  # noqa: E402  (bench/ is not a package)


def cpu_s() -> float:
    """CPU seconds this client process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def redis_input_bytes(url: str) -> int:
    """Bytes Redis has received from all clients so far."""
    out = subprocess.run(["redis-cli", "-u", url, "info", "stats"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("total_net_input_bytes:"):
            return int(line.split(":")[1])
    raise RuntimeError("no total_net_input_bytes in INFO")


def start_chatd(env: dict[str, str], data: str) -> tuple[subprocess.Popen, str]:
    """`python -m chatd serve` on a free port; (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chatd", "serve", "--port", str(port), "--data-dir", data],
                            env=env, cwd=use_server_tree(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz")
    return proc, base


async def watch(ws) -> tuple[int, int]:
    """(characters, frames) of stream_content until message_added."""
    chars = frames = 0
    while True:
        text = await ws.read_message()
        if text is None:
            raise RuntimeError("socket closed")
        frame = json.loads(text)
        if frame["type"] == "stream_content":
            chars += len(frame["data"]["content"])
            frames += 1
        elif frame["type"] == "message_added":
            return chars, frames


async def chatd_run(args: argparse.Namespace) -> dict[str, float]:
    """Start chatd (one or two processes), run every reply at once, measure."""
    data = tempfile.mkdtemp(prefix="bench-replies-")
    prefix = f"bench{os.getpid()}:"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHATD_")},
           "CHATD_LOG_LEVEL": "WARNING", "CHATD_RATE_MESSAGES": "100000000", "CHATD_RATE_AUTH_ATTEMPTS": "100000",
           "CHATD_MAX_CONCURRENT_REPLIES": "100000", "CHATD_MAX_FRAMES_PER_SECOND": "100000",
           "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "1000000",
           "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": str(args.chunk), "CHATD_COALESCE_MS": str(args.coalesce_ms),
           "CHATD_OUTBOUND_QUEUE_BYTES": str(64 << 20)}
    if args.procs == 2:
        env.update({"CHATD_BUS": "redis", "CHATD_LIMITER": "redis", "CHATD_INFLIGHT": "redis",
                    "CHATD_REDIS_URL": args.redis_url, "CHATD_REDIS_PREFIX": prefix})
    procs = []
    try:
        a, base_a = start_chatd(env, data)
        procs.append(a)
        base_b = base_a
        if args.procs == 2:
            b, base_b = start_chatd(env, data)
            procs.append(b)
        auth = call(base_a, "/api/v1/auth/register", {"username": "bench", "password": "bench-password"})
        token = auth["access_token"]
        cids = [call(base_a, "/api/v1/conversations", {"title": "b"}, token)["conversation"]["id"]
                for _ in range(args.replies)]

        async def connect(base: str):
            ws = await websocket_connect(base.replace("http:", "ws:") + "/api/v1/chat/ws", max_message_size=1 << 26)
            await ws.write_message(json.dumps({"type": "auth", "token": token}))
            await ws.read_message()
            return ws

        watchers = []
        for cid in cids:
            ws = await connect(base_b)
            await ws.write_message(json.dumps({"type": "join_conversation", "data": {"conversation_id": cid}}))
            while json.loads(await ws.read_message())["type"] != "joined":
                pass
            watchers.append(ws)
        senders = [await connect(base_a) for _ in cids]
        text = "x" * (args.tokens * args.chunk)
        redis_before = redis_input_bytes(args.redis_url) if args.procs == 2 else 0
        cpu0, t0 = cpu_s(), time.perf_counter()
        for ws, cid in zip(senders, cids, strict=True):
            await ws.write_message(json.dumps({"type": "send_message", "data": {
                "conversation_id": cid, "content": "/echo " + text, "message_type": "user"}}))
        got = await asyncio.gather(*(watch(ws) for ws in watchers))
        elapsed, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        chars = sum(c for c, _ in got)
        frames = sum(f for _, f in got)
        assert chars == len(text) * args.replies, (chars, len(text) * args.replies)
        out = {"tokens_per_s": chars / args.chunk / elapsed, "frames_per_s": frames / elapsed,
               "seconds": elapsed, "client_cpu": cpu / elapsed}
        if args.procs == 2:
            out["redis_bytes_per_reply"] = (redis_input_bytes(args.redis_url) - redis_before) / args.replies
        for ws in watchers + senders:
            ws.close()
        return out
    finally:
        for proc in procs:  # their keys go with them (released replies, expiring leases and windows)
            proc.terminate()
            proc.wait(20)


async def bare_run(args: argparse.Namespace) -> dict[str, float]:
    """The same number of sockets on the bare server; one frame per token to each."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "baseline_server.py"), str(port)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        url = f"ws://127.0.0.1:{port}/ws"
        socks = [await websocket_connect(url, max_message_size=1 << 26) for _ in range(args.replies)]

        async def drain(ws) -> int:
            n = 0
            while True:
                text = await ws.read_message()
                if text is None or '"done"' in text:
                    return n
                n += 1

        cpu0, t0 = cpu_s(), time.perf_counter()
        await socks[0].write_message(json.dumps({"fanout": args.tokens, "size": args.chunk}))
        counts = await asyncio.gather(*(drain(ws) for ws in socks))
        elapsed, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        for ws in socks:
            ws.close()
        return {"frames_per_s": sum(counts) / elapsed, "seconds": elapsed, "client_cpu": cpu / elapsed}
    finally:
        proc.terminate()
        proc.wait(20)


async def main() -> None:
    """Alternate bare and chatd runs; print each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per reply")
    parser.add_argument("--chunk", type=int, default=4, help="characters per token")
    parser.add_argument("--procs", type=int, choices=[1, 2], default=1)
    parser.add_argument("--coalesce-ms", type=float, default=15.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Tornado baseline")
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        bare = None if args.no_bare else await bare_run(args)
        chatd = await chatd_run(args)
        print(f"run {run}: replies={args.replies} tokens={args.tokens} procs={args.procs} "
              f"coalesce_ms={args.coalesce_ms}")
        if bare is not None:
            print(f"  tornado-bare  {bare['frames_per_s']:>10,.0f} frames/s (one per token) "
                  f"in {bare['seconds']:.2f}s, client CPU {bare['client_cpu']:.0%}")
        extra = (f", Redis {chatd['redis_bytes_per_reply'] / 1024:,.1f} KiB in per reply"
                 if "redis_bytes_per_reply" in chatd else "")
        print(f"  chatd         {chatd['tokens_per_s']:>10,.0f} tokens/s, {chatd['frames_per_s']:,.0f} frames/s "
              f"in {chatd['seconds']:.2f}s, client CPU {chatd['client_cpu']:.0%}{extra}")
        if bare is not None:
            print(f"  ratio chatd tokens/s / bare frames/s: x{chatd['tokens_per_s'] / bare['frames_per_s']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
