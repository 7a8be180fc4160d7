"""With only OPENAI_BASE_URL in the environment, a user chats with an OpenAI-compatible server through chatd."""
from __future__ import annotations

import pytest
from llm_fakes import Behavior

from chatd.testing import test_settings


@pytest.fixture
def chatd_settings(tmp_path, fake_llm, monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_url)  # e.g. Ollama's http://127.0.0.1:11434/v1
    monkeypatch.setenv("OPENAI_MODEL", "llama3.1")
    return test_settings(tmp_path)  # no [[assistants]]: the default_assistants hook decides


@pytest.mark.asyncio
async def test_env_base_url_makes_the_compatible_server_the_default(chatd, fake_llm):
    _, token = await chatd.register()
    status, body, _ = await chatd.request("GET", "/api/v1/assistants", token)
    default = next(a for a in body["assistants"] if a["default"])
    assert default == {"id": "openai", "name": "OpenAI-compatible (llama3.1)", "provider": "openai",
                       "model": "llama3.1", "default": True}
    conv = await chatd.conversation(token)
    assert conv["assistant_id"] == "openai"
    ws = await chatd.ws(token)
    await ws.join(conv["id"])
    fake_llm.push(Behavior(deltas=["Local ", "model ", "here"], delay=0.01))
    await ws.send({"type": "send_message", "data": {"conversation_id": conv["id"], "content": "hi",
                                                    "message_type": "user"}})
    frames = await ws.collect_until("message_added", timeout=10)
    assert "".join(f["data"]["content"] for f in frames if f["type"] == "stream_content") == "Local model here"
    assert fake_llm.requests[0].body["model"] == "llama3.1"
    assert fake_llm.requests[0].headers["Authorization"] == "Bearer sk-no-key-required"
