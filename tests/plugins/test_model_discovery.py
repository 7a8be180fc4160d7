"""Models discovered from an OpenAI-compatible server's `/v1/models`, as Ollama, vLLM, llama.cpp and LM Studio serve it.

Every test runs a real chatd against the local fake (llm_fakes.py) through the real openai SDK.
"""
from __future__ import annotations

import logging

import pytest
import pytest_asyncio
from llm_fakes import Behavior, FakeLLM, serve_fake, stop_fake

from chatd.app import start_server
from chatd.testing import ChatdTestClient, free_port, test_settings
from chatd_openai import OpenAIProvider

SERVED = ["llama3.2:latest", "qwen2.5-coder:7b", "mistral-small3.1:24b-instruct-2503-q4_K_M"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture
async def start(tmp_path):
    """Start chatd with settings overrides; stopped after the test."""
    started: list[tuple] = []

    async def go(**overrides) -> ChatdTestClient:
        server = await start_server(test_settings(tmp_path, **overrides))
        client = ChatdTestClient(server)
        started.append((server, client))
        return client

    yield go
    for server, client in started:
        client.close()
        await server.stop()


async def assistants(client: ChatdTestClient, token: str, refresh: bool = False) -> list[dict]:
    status, body, _ = await client.request("GET", "/api/v1/assistants" + ("?refresh=1" if refresh else ""), token)
    assert status == 200, body
    return body["assistants"]


async def reply(client: ChatdTestClient, token: str, conv: dict, text: str = "hi") -> str:
    ws = await client.ws(token)
    await ws.join(conv["id"])
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": text,
                                                    "message_type": "user"}})
    frames = await ws.collect_until("message_added", timeout=10)
    added = next(f for f in frames if f["type"] == "message_added")["data"]["message"]
    assert added["status"] == "complete", added
    return added["content"]


@pytest.mark.asyncio
async def test_base_url_alone_offers_every_served_model_the_first_the_default(start, fake_llm, monkeypatch):
    fake_llm.models = list(SERVED)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_url)
    client = await start()
    _, token = await client.register()
    listed = await assistants(client, token)
    openai_ones = [a for a in listed if a["provider"] == "openai"]
    assert [a["model"] for a in openai_ones] == SERVED
    assert [a["name"] for a in openai_ones] == SERVED  # full names: the page must not cut them
    assert [a["id"] for a in listed if a["default"]] == ["llama3.2:latest"]
    assert "gpt-4o-mini" not in str(listed)
    assert any(a["id"] == "demo" and not a["default"] for a in listed)
    conv = await client.conversation(token)
    assert conv["assistant_id"] == "llama3.2:latest"
    fake_llm.push(Behavior(deltas=["Local ", "llama"]))
    assert await reply(client, token, conv) == "Local llama"
    assert fake_llm.requests[0].body["model"] == "llama3.2:latest"
    coder = await client.conversation(token, assistant_id="qwen2.5-coder:7b")
    await reply(client, token, coder, "write code")
    assert fake_llm.requests[-1].body["model"] == "qwen2.5-coder:7b"
    status, ready, _ = await client.request("GET", "/readyz")
    assert status == 200 and ready["providers"]["openai"] == "ok", ready


@pytest.mark.asyncio
async def test_a_configured_model_the_server_lacks_fails_readyz_and_is_not_offered(start, fake_llm, monkeypatch):
    """The README's Ollama hint used to offer gpt-4o-mini: every reply then failed with a 404."""
    fake_llm.models = list(SERVED)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_url)
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4o-mini")
    client = await start()
    status, ready, _ = await client.request("GET", "/readyz")
    assert status == 503
    assert ready["providers"]["openai"] == "model not served: gpt-4o-mini"
    _, token = await client.register()
    listed = await assistants(client, token)
    assert "gpt-4o-mini" not in [a["model"] for a in listed]
    assert [a["id"] for a in listed if a["default"]] == ["llama3.2:latest"]  # the default moved to a served one
    fake_llm.models.append("gpt-4o-mini")  # `ollama pull` it: the next probe is happy, the configured one is back
    status, ready, _ = await client.request("GET", "/readyz")
    assert status == 200, ready
    listed = await assistants(client, token)
    assert [a["id"] for a in listed if a["default"]] == ["openai"]
    assert [a["model"] for a in listed if a["provider"] == "openai"] == ["gpt-4o-mini", *SERVED]


@pytest.mark.asyncio
async def test_configured_assistants_are_checked_against_the_list(start, fake_llm):
    fake_llm.models = ["llama3.2:latest"]
    client = await start(providers={"local": {"type": "openai", "base_url": fake_llm.openai_url}},
                         assistants=[{"id": "good", "name": "Good", "provider": "local", "model": "llama3.2:latest"},
                                     {"id": "typo", "name": "Typo", "provider": "local", "model": "llama3.3"}])
    _, token = await client.register()
    assert [a["id"] for a in await assistants(client, token)] == ["good"]  # no discovery without `discover`
    status, ready, _ = await client.request("GET", "/readyz")
    assert (status, ready["providers"]) == (503, {"local": "model not served: llama3.3"})


@pytest.mark.asyncio
async def test_server_down_at_start_up_logs_one_line_keeps_the_configured_model_and_refresh_retries(
        start, monkeypatch, caplog):
    port = free_port()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_MODEL", "llama3.2:latest")
    with caplog.at_level(logging.WARNING, logger="chatd"):
        client = await start()
    lines = [r.getMessage() for r in caplog.records if "could not list its models" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "openai" in lines[0] and "retry on refresh" in lines[0]
    _, token = await client.register()
    listed = await assistants(client, token)
    assert [(a["id"], a["default"]) for a in listed] == [("openai", True), ("demo", False)]
    status, ready, _ = await client.request("GET", "/readyz")
    assert (status, ready["providers"]["openai"]) == (503, "failed")

    fake = FakeLLM()
    fake.models = list(SERVED)
    server = serve_fake(fake, port)  # Ollama comes up
    try:
        listed = await assistants(client, token)
        assert [a["id"] for a in listed] == ["openai", "demo"]  # nothing asked yet
        listed = await assistants(client, token, refresh=True)
        assert [a["model"] for a in listed if a["provider"] == "openai"] == SERVED  # llama3.2 is the configured one
        assert [a["id"] for a in listed if a["default"]] == ["openai"]
        fake.models.append("phi4:14b")  # pulled while chatd runs
        assert "phi4:14b" not in [a["id"] for a in await assistants(client, token)]
        assert "phi4:14b" in [a["id"] for a in await assistants(client, token, refresh=True)]
    finally:
        await stop_fake(server)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chatd"):
        listed = await assistants(client, token, refresh=True)  # down again: the last list stays
    assert "phi4:14b" in [a["id"] for a in listed]
    assert sum("could not list its models" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.asyncio
async def test_base_url_alone_with_the_server_down_offers_the_demo_until_it_answers(start, monkeypatch):
    port = free_port()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    client = await start()
    _, token = await client.register()
    assert [(a["id"], a["default"]) for a in await assistants(client, token)] == [("demo", True)]
    fake = FakeLLM()
    fake.models = ["llama3.2:latest"]
    server = serve_fake(fake, port)
    try:
        listed = await assistants(client, token, refresh=True)
        assert [(a["id"], a["default"]) for a in listed] == [("llama3.2:latest", True), ("demo", False)]
    finally:
        await stop_fake(server)


@pytest.mark.asyncio
async def test_list_models_through_the_sdk(fake_llm):
    p = OpenAIProvider({"base_url": fake_llm.openai_url})
    try:
        assert await p.list_models() is None  # the fake without a list answers 404: not a failure
        assert await p.check()
        fake_llm.models = ["a", "b"]
        assert await p.list_models() == ["a", "b"]
        assert fake_llm.listings[-1].path == "/v1/models"
        assert fake_llm.listings[-1].headers["Authorization"] == "Bearer sk-no-key-required"
        fake_llm.models_status = 500
        assert not await p.check()
    finally:
        await p.aclose()
