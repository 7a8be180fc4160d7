"""Issue 3 item 5: a client that never reads is closed 1008 within seconds; memory stays flat;
another client's stream is unaffected. Real `chatd serve` process, RSS measured with psutil."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request

import psutil
import pytest

from chatd.testing import RawWS, ServerProcess, ahttp, register

PAYLOAD = 30_000  # characters per pushed message (the default limit is 32,000)
TARGET_BYTES = 50 * 1024 * 1024


def _slow_closed(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^chatd_ws_slow_consumer_closed_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.slow
@pytest.mark.asyncio
async def test_stuck_reader_is_closed_and_memory_stays_flat(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = {"CHATD_RATE_MESSAGES": "1000000", "CHATD_MAX_FRAMES_PER_SECOND": "100000", "CHATD_LOG_LEVEL": "WARNING",
           "CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": "200", "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "4"}
    srv = ServerProcess(data, env)
    srv.cli("user", "create", "boss", "--role", "admin", "--password-stdin", input="correct horse\n")
    srv.start()
    proc = psutil.Process(srv.pid)
    raws: list[RawWS] = []
    try:
        status, body = await ahttp("POST", f"{srv.base}/api/v1/auth/login",
                                   body={"username": "boss", "password": "correct horse"})
        assert status == 200, body
        boss_token = body["access_token"]
        stuck_user, stuck_token = await register(srv.base, "stuck")
        good_user, good_token = await register(srv.base, "good")
        status, body = await ahttp("POST", f"{srv.base}/api/v1/conversations", boss_token,
                                   {"title": "flood", "member_ids": [stuck_user["id"], good_user["id"]]})
        cid = body["conversation"]["id"]

        stuck = RawWS(srv.port, rcvbuf=4096)
        stuck.auth(stuck_token)
        stuck.send({"type": "join_conversation", "data": {"conversation_id": cid}})
        stuck.recv_json("joined")  # from here on it never reads

        good = RawWS(srv.port)
        good.auth(good_token)
        good.send({"type": "join_conversation", "data": {"conversation_id": cid}})
        good.recv_json("joined")
        pusher = RawWS(srv.port)
        pusher.auth(boss_token)
        raws += [stuck, good, pusher]

        await asyncio.sleep(0.5)
        rss_base = proc.memory_info().rss
        peak = [rss_base]
        stop = threading.Event()

        stuck_port = stuck.sock.getsockname()[1]
        gone: list[float] = []

        def sample() -> None:
            k = 0
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], proc.memory_info().rss)
                    k += 1
                    if not gone and k % 10 == 0 and not any(
                            c.raddr and c.raddr.port == stuck_port and c.status == psutil.CONN_ESTABLISHED
                            for c in proc.net_connections(kind="tcp")):
                        gone.append(time.monotonic())
                except psutil.Error:
                    return
                time.sleep(0.02)

        good_stats = {"bytes": 0, "seqs": [], "chunks": [], "reply": None, "end": False}
        reply_text = " ".join(f"tok{i:04d}" for i in range(250))  # 2,249 characters, ~560 deltas

        def read_good() -> None:
            good.sock.settimeout(60)
            while not (good_stats["end"] and good_stats["reply"] is not None):
                op, payload = good.recv_frame()
                good_stats["bytes"] += len(payload)
                if op != 1:
                    continue
                f = json.loads(payload)
                d = f.get("data", {})
                if f["type"] in ("message_received", "message_added"):
                    good_stats["seqs"].append(d["seq"])
                    if d["message"]["content"] == "END":
                        good_stats["end"] = True
                    if f["type"] == "message_added":
                        good_stats["reply"] = d["message"]
                elif f["type"] == "stream_content":
                    good_stats["chunks"].append((d["index"], d["content"]))

        closed_at: list[float] = []

        def push() -> int:
            pushed = 0
            n = 0
            filler = "x" * PAYLOAD
            while pushed < TARGET_BYTES:
                first = n + 1
                for _ in range(8):  # a window of 8 messages in flight
                    n += 1
                    pusher.send({"type": "send_message", "ref": str(n), "data": {
                        "conversation_id": cid, "content": f"{n:06d}" + filler[6:], "message_type": "system"}})
                    # Pushed at the stuck socket: message_received and the conversation_updated carrying it.
                    pushed += 2 * (PAYLOAD + 400)
                acked = set()
                while len(acked) < n - first + 1:
                    f = pusher.recv_json()
                    assert f["type"] != "error", f
                    if f["type"] == "ack":
                        acked.add(f["data"]["ref"])
                if not closed_at and n % 40 == 0 and _slow_closed(srv.base) >= 1:
                    closed_at.append(time.monotonic())
            pusher.send({"type": "send_message", "data": {"conversation_id": cid, "content": "END",
                                                          "message_type": "system"}})
            return pushed

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        reader = asyncio.create_task(asyncio.to_thread(read_good))
        good.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo " + reply_text,
                                                    "message_type": "user"}})
        t0 = time.monotonic()
        pushed = await asyncio.to_thread(push)
        t_push = time.monotonic() - t0
        await asyncio.wait_for(reader, 60)
        deadline = time.monotonic() + 10
        while not closed_at and time.monotonic() < deadline:
            if _slow_closed(srv.base) >= 1:
                closed_at.append(time.monotonic())
            await asyncio.sleep(0.05)
        stop.set()
        sampler.join(2)
        growth = (peak[0] - rss_base) / 2**20
        gone_at = gone[0] if gone else None
        print(f"\nbackpressure: pushed {pushed / 2**20:.1f} MiB in {t_push:.1f} s, good client read "
              f"{good_stats['bytes'] / 2**20:.1f} MiB; stuck reader closed (1008 decided) "
              f"{(closed_at[0] - t0) if closed_at else float('nan'):.2f} s after the flood began, TCP gone after "
              f"{(gone_at - t0) if gone_at else float('nan'):.2f} s; server RSS {rss_base / 2**20:.1f} MiB "
              f"-> peak {peak[0] / 2**20:.1f} MiB (+{growth:.1f} MiB)")
        assert pushed >= TARGET_BYTES and good_stats["bytes"] >= 50_000_000
        assert closed_at and closed_at[0] - t0 < 5
        assert gone_at is not None and gone_at - closed_at[0] < 7  # the TCP connection is cut too
        assert growth < 20
        # The good client's view is complete and in order.
        seqs = good_stats["seqs"]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        chunks = good_stats["chunks"]
        assert [i for i, _ in chunks] == list(range(len(chunks)))
        assert "".join(c for _, c in chunks) == reply_text == good_stats["reply"]["content"]
        # What the stuck socket still holds ends with a 1008 close frame, or the server cut it.
        stuck.sock.settimeout(5)
        code = None
        try:
            while True:
                op, payload = stuck.recv_frame()
                if op == 8:
                    code = int.from_bytes(payload[:2], "big")
                    break
        except (ConnectionError, OSError):
            pass
        assert code in (1008, None)
    finally:
        for raw in raws:
            raw.close()
        srv.stop()
