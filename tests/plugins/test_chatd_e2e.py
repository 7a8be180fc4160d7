"""End to end: chatd configured with the OpenAI / Anthropic providers pointed at the fake server, WebSocket clients."""
from __future__ import annotations

import asyncio

import pytest
from llm_fakes import TITLE_REPLY, Behavior

from chatd.testing import test_settings

KEY = "sk-e2e-SECRET0123456789abcdef"


@pytest.fixture
def chatd_settings(tmp_path, fake_llm):
    """chatd with an OpenAI-compatible and an Anthropic assistant, both on the fake server."""
    return test_settings(tmp_path, providers={
        "compat": {"type": "openai", "base_url": fake_llm.openai_url, "api_key": KEY, "max_retries": 0,
                   "timeout": 5},
        "claude": {"type": "anthropic", "base_url": fake_llm.anthropic_url, "api_key": KEY, "max_retries": 0},
    }, assistants=[
        {"id": "gpt", "name": "GPT via compat", "provider": "compat", "model": "gpt-4o-mini",
         "system_prompt": "You are terse.", "default": True},
        {"id": "claude", "name": "Claude test", "provider": "claude", "model": "claude-test-1",
         "system_prompt": "You are Claude."},
    ])


async def start_chat(chatd, assistant_id: str | None = None):
    user, token = await chatd.register()
    fields = {"assistant_id": assistant_id} if assistant_id else {}
    conv = await chatd.conversation(token, **fields)
    ws = await chatd.ws(token)
    await ws.join(conv["id"])
    return user, token, conv, ws


async def send(ws, conv, content: str, **extra):
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": content,
                                                    "message_type": "user", **extra}})


@pytest.mark.asyncio
async def test_openai_compatible_reply_streams_to_the_client(chatd, fake_llm):
    _, token, conv, ws = await start_chat(chatd)
    fake_llm.push(Behavior(deltas=["Stream", "ing ", "works", "."], usage=(30, 4), delay=0.02))
    await send(ws, conv, "hello there")
    frames = await ws.collect_until("message_added", timeout=10)
    start = next(f for f in frames if f["type"] == "stream_start")["data"]
    assert start["assistant_id"] == "gpt"
    chunks = [f["data"] for f in frames if f["type"] == "stream_content"]
    assert len(chunks) >= 2  # streamed, not one lump
    assert "".join(c["content"] for c in chunks) == "Streaming works."
    complete = next(f for f in frames if f["type"] == "stream_complete")["data"]
    assert complete["usage"] == {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}
    assert complete["finish_reason"] == "stop"
    added = frames[-1]["data"]["message"]
    assert added["content"] == "Streaming works." and added["status"] == "complete"
    sent = fake_llm.requests[0].body
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "hello there"}]
    # Then the title, generated through the same assistant with a small budget.
    upd = await ws.expect("conversation_updated", timeout=10,
                          where=lambda f: f["data"]["conversation"]["title"] != "New conversation")
    assert upd["data"]["conversation"]["title"] == TITLE_REPLY
    title_req = fake_llm.requests[1].body
    assert title_req["max_tokens"] == 16 and title_req["messages"][0]["content"].startswith("Write a title")
    status, body, _ = await chatd.request("GET", f"/api/v1/conversations/{conv['id']}", token)
    assert body["conversation"]["title"] == TITLE_REPLY


@pytest.mark.asyncio
async def test_anthropic_reply_streams_to_the_client(chatd, fake_llm):
    _, _, conv, ws = await start_chat(chatd, "claude")
    fake_llm.push(Behavior(deltas=["Claude ", "says ", "hi"], usage=(12, 3), finish="max_tokens"))
    await send(ws, conv, "hi Claude")
    frames = await ws.collect_until("message_added", timeout=10)
    complete = next(f for f in frames if f["type"] == "stream_complete")["data"]
    assert complete["finish_reason"] == "length" and complete["usage"]["total_tokens"] == 15
    assert frames[-1]["data"]["message"]["content"] == "Claude says hi"
    sent = fake_llm.requests[0].body
    assert sent["system"] == "You are Claude." and sent["messages"] == [{"role": "user", "content": "hi Claude"}]


@pytest.mark.asyncio
async def test_auth_failure_reaches_the_client_as_provider_error_without_key(chatd, fake_llm):
    _, _, conv, ws = await start_chat(chatd)
    fake_llm.push(Behavior(kind="status", status=401, body={"error": {"message": f"Incorrect API key {KEY}",
                                                                      "type": "invalid_request_error",
                                                                      "code": "invalid_api_key"}}))
    await send(ws, conv, "hello")
    frames = await ws.collect_until("message_added", timeout=10)
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err["code"] == "PROVIDER_ERROR" and "GPT via compat" in err["message"] and KEY not in err["message"]
    assert frames[-1]["data"]["message"]["status"] == "error"
    assert all(KEY not in str(f) for f in ws.frames)


@pytest.mark.asyncio
async def test_unavailable_provider_names_the_assistant(chatd, fake_llm):
    _, _, conv, ws = await start_chat(chatd)
    fake_llm.push(Behavior(kind="status", status=503, body={"error": {"message": "overloaded"}}))
    await send(ws, conv, "hello")
    frames = await ws.collect_until("message_added", timeout=10)
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err["code"] == "PROVIDER_UNAVAILABLE" and "GPT via compat" in err["message"]


@pytest.mark.asyncio
async def test_mid_stream_disconnect_keeps_the_partial_text(chatd, fake_llm):
    _, _, conv, ws = await start_chat(chatd)
    fake_llm.push(Behavior(kind="disconnect", deltas=["partial ", "text ", "lost"], after=2, delay=0.02))
    await send(ws, conv, "hello")
    frames = await ws.collect_until("message_added", timeout=10)
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err["code"] == "PROVIDER_UNAVAILABLE"
    streamed = "".join(f["data"]["content"] for f in frames if f["type"] == "stream_content")
    added = frames[-1]["data"]["message"]
    assert streamed == "partial text " and added["content"] == "partial text " and added["status"] == "error"


@pytest.mark.asyncio
async def test_stop_generation_closes_the_upstream_stream(chatd, fake_llm):
    _, _, conv, ws = await start_chat(chatd)
    fake_llm.push(Behavior(deltas=[f"w{i} " for i in range(300)], delay=0.02))
    await send(ws, conv, "talk a lot")
    first = await ws.expect("stream_content", timeout=10)
    await ws.send({"type": "stop_generation", "data": {"message_id": first["data"]["message_id"]}})
    frames = await ws.collect_until("message_added", timeout=10)
    err = next(f for f in frames if f["type"] == "stream_error")["data"]
    assert err["code"] == "CANCELLED"
    assert frames[-1]["data"]["message"]["status"] == "cancelled"
    await asyncio.wait_for(fake_llm.disconnected.wait(), 3)  # the fake saw the client go away
    assert fake_llm.completed == 0


@pytest.mark.asyncio
async def test_assistants_are_listed(chatd):
    _, token = await chatd.register()
    status, body, _ = await chatd.request("GET", "/api/v1/assistants", token)
    assert status == 200
    assert body["assistants"] == [
        {"id": "gpt", "name": "GPT via compat", "provider": "openai", "model": "gpt-4o-mini", "default": True},
        {"id": "claude", "name": "Claude test", "provider": "anthropic", "model": "claude-test-1", "default": False},
    ]
