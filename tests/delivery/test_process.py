"""Real `chatd serve` processes: kill -9 mid-reply then restart (checkpoints + sweep), and SIGTERM
(graceful shutdown: no new replies, grace for running ones, 1001, exit 0)."""
from __future__ import annotations

import asyncio
import time

import pytest

from chatd.testing import ServerProcess, ahttp, register, ws_connect

pytestmark = pytest.mark.usefixtures("ws_clients")

ECHO = " ".join(f"word{i:03d}" for i in range(120))  # 959 characters


def _env(tps: float, **extra: str) -> dict[str, str]:
    env = {"CHATD_PROVIDERS__DEMO__TOKENS_PER_SECOND": str(tps), "CHATD_PROVIDERS__DEMO__ECHO_CHUNK": "4",
           "CHATD_LOG_LEVEL": "WARNING"}
    env.update(extra)
    return env


async def _start_reply(srv: ServerProcess, text: str):
    _, token = await register(srv.base, "alice")
    status, body = await ahttp("POST", f"{srv.base}/api/v1/conversations", token, {"title": "t"})
    assert status == 201
    cid = body["conversation"]["id"]
    ws = await ws_connect(srv.ws_url, token)
    await ws.join(cid)
    await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo " + text,
                                                    "message_type": "user"}})
    start = (await ws.expect("stream_start", timeout=10))["data"]
    return token, cid, ws, start["message_id"]


async def _read_text(ws, mid, seconds: float, text: str = "", index: int = -1) -> tuple[str, int, list[dict]]:
    """Assemble stream_content for `seconds` (or until the socket closes)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    others = []
    while loop.time() < end:
        try:
            f = await ws.recv(timeout=max(0.01, end - loop.time()))
        except TimeoutError:
            break
        if f is None:
            break
        if f["type"] == "stream_content" and f["data"]["message_id"] == mid:
            assert f["data"]["index"] == index + 1
            index = f["data"]["index"]
            text += f["data"]["content"]
        else:
            others.append(f)
    return text, index, others


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kill_9_mid_reply_then_restart_marks_it_interrupted(tmp_path):
    # 20 deltas/s of 4 characters: 80 characters per second; checkpoint every 1 s (the default).
    srv = ServerProcess(tmp_path / "data", _env(20)).start()
    try:
        token, cid, ws, mid = await _start_reply(srv, ECHO)
        streamed, index, _ = await _read_text(ws, mid, 2.7)
        srv.kill9()
        streamed, index, _ = await _read_text(ws, mid, 1.0, streamed, index)  # whatever was in flight
    finally:
        srv.stop()
    assert len(streamed) >= 150
    srv2 = ServerProcess(tmp_path / "data", _env(20)).start()
    try:
        ws2 = await ws_connect(srv2.ws_url, token)  # the token survives: the secret is in the data dir
        await ws2.send({"type": "join_conversation", "data": {"conversation_id": cid, "since_seq": 1}})
        frames = await ws2.collect_until("joined", timeout=10)
        assert [f["type"] for f in frames] == ["message_added", "joined"]
        msg = frames[0]["data"]["message"]
        assert msg["id"] == mid and msg["status"] == "interrupted" and msg["seq"] == 2
        assert frames[1]["data"]["active_streams"] == [] and frames[1]["data"]["seq"] == 2
        stored = msg["content"]
        lost = len(streamed) - len(stored)
        print(f"\nkill -9: streamed {len(streamed)} chars, checkpointed {len(stored)}, lost {lost} "
              f"(<= 1 s at 80 chars/s)")
        assert stored and streamed.startswith(stored)  # a prefix of what the client saw
        assert lost <= 80 * 1.0 + 40  # at most one checkpoint interval (plus one coalescing window)
        status, body = await ahttp("GET", f"{srv2.base}/api/v1/conversations/{cid}/messages", token)
        stored_msg = next(m for m in body["messages"] if m["id"] == mid)
        assert stored_msg["status"] == "interrupted" and stored_msg["content"] == stored
        # The conversation goes on after the restart.
        await ws2.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo again",
                                                         "message_type": "user"}})
        added = await ws2.expect("message_added", timeout=10)
        assert added["data"]["message"]["content"] == "again" and added["data"]["seq"] == 4
    finally:
        srv2.stop()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_sigterm_lets_a_running_reply_finish_within_grace(tmp_path):
    srv = ServerProcess(tmp_path / "data", _env(60, CHATD_SHUTDOWN_GRACE_S="10")).start()
    try:
        text = ECHO[:360]  # 90 deltas at 60/s: 1.5 s
        token, cid, ws, mid = await _start_reply(srv, text)
        streamed, index, _ = await _read_text(ws, mid, 0.3)
        t0 = time.monotonic()
        srv.term()
        await asyncio.sleep(0.1)
        # No new replies while shutting down; nothing stored for the refused message.
        await ws.send({"type": "send_message", "data": {"conversation_id": cid, "content": "/echo more",
                                                        "message_type": "user"}, "ref": "late"})
        streamed, index, others = await _read_text(ws, mid, 8, streamed, index)
        err = next(f for f in others if f["type"] == "error")["data"]
        assert err["ref"] == "late" and err["code"] == "PROVIDER_UNAVAILABLE"
        types = [f["type"] for f in others]
        assert "stream_complete" in types and "stream_error" not in types
        added = next(f for f in others if f["type"] == "message_added")["data"]["message"]
        assert added["status"] == "complete" and added["content"] == streamed == text
        assert ws.close_code == 1001
        assert srv.wait(10) == 0
        elapsed = time.monotonic() - t0
        print(f"\nSIGTERM with grace: reply finished, exit 0 after {elapsed:.2f} s")
        assert elapsed < 8
        msgs_types = [m for m in others if m["type"] == "message_received"]
        assert msgs_types == []
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_sigterm_with_short_grace_interrupts_the_reply(tmp_path):
    srv = ServerProcess(tmp_path / "data", _env(20, CHATD_SHUTDOWN_GRACE_S="0.5")).start()
    try:
        token, cid, ws, mid = await _start_reply(srv, ECHO)  # 6 s of reply
        streamed, index, _ = await _read_text(ws, mid, 1.0)
        t0 = time.monotonic()
        srv.term()
        streamed, index, others = await _read_text(ws, mid, 8, streamed, index)
        err = next(f for f in others if f["type"] == "stream_error")["data"]
        assert err["message_id"] == mid and err["code"] == "CANCELLED"
        added = next(f for f in others if f["type"] == "message_added")["data"]["message"]
        assert added["status"] == "interrupted" and added["content"] == streamed and ECHO.startswith(streamed)
        assert ws.close_code == 1001
        assert srv.wait(10) == 0
        elapsed = time.monotonic() - t0
        print(f"\nSIGTERM, grace 0.5 s: interrupted with {len(streamed)} chars, exit 0 after {elapsed:.2f} s")
        assert elapsed < 4
    finally:
        srv.stop()
    srv2 = ServerProcess(tmp_path / "data", _env(20)).start()
    try:
        status, body = await ahttp("GET", f"{srv2.base}/api/v1/conversations/{cid}/messages", token)
        stored = next(m for m in body["messages"] if m["id"] == mid)
        assert stored["status"] == "interrupted" and stored["content"] == streamed
    finally:
        srv2.stop()
