"""The `default_assistants` and `register_providers` hooks of the first-party plugins, through PluginRegistry."""
from __future__ import annotations

import pytest

from chatd.plugins import PluginRegistry

KEY = "sk-env-SECRET0123456789"


def configured(environ: dict[str, str]) -> PluginRegistry:
    reg = PluginRegistry()  # entry points: the demo, openai, anthropic and filters plugins
    reg.configure({}, [], environ=environ)
    return reg


def test_register_providers_and_register_filters_hooks_of_the_bundled_plugins():
    reg = PluginRegistry()
    reg.load()
    assert {"demo", "openai", "anthropic"} <= set(reg.provider_types)
    names = {f.name for f in reg.inbound_filters} | {f.name for f in reg.outbound_filters}
    assert {"blocklist", "pii", "max_length"} <= names


def test_bare_machine_keeps_the_demo_default():
    reg = configured({})
    assert reg.default_assistant.id == "demo"
    assert "openai" not in reg.assistants and "anthropic" not in reg.assistants


def test_openai_key_makes_an_openai_assistant_the_default():
    reg = configured({"OPENAI_API_KEY": KEY, "OPENAI_MODEL": "gpt-4.1-nano"})
    a = reg.default_assistant
    assert (a.id, a.model, reg.provider_type_of[a.provider]) == ("openai", "gpt-4.1-nano", "openai")
    assert "demo" in reg.assistants and not reg.assistants["demo"].default
    assert KEY not in str(reg.list_assistants())


def test_base_url_alone_offers_the_models_the_server_lists():
    reg = configured({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert reg.providers["openai"].base_url == "http://127.0.0.1:11434/v1"
    assert [s.template.provider for s in reg.catalog.sources] == ["openai"]
    # No guessed model (gpt-4o-mini is not on an Ollama): until the server is asked (test_model_discovery), the demo.
    assert "openai" not in reg.assistants and reg.default_assistant.id == "demo"


def test_base_url_and_model_offer_that_model_first():
    reg = configured({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_MODEL": "llama3.2"})
    a = reg.default_assistant
    assert a.id == "openai" and a.model == "llama3.2" and "compatible" in a.name
    assert [s.template.provider for s in reg.catalog.sources] == ["openai"]


def test_anthropic_key_offers_claude_and_openai_wins_when_both():
    reg = configured({"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_MODEL": "claude-haiku-4-5"})
    assert reg.default_assistant.id == "anthropic" and reg.default_assistant.model == "claude-haiku-4-5"
    both = configured({"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY})
    assert both.default_assistant.id == "openai" and "anthropic" in both.assistants


def test_configured_assistants_switch_the_env_defaults_off():
    reg = PluginRegistry()
    reg.configure({"demo": {}}, [{"id": "only", "name": "Only", "provider": "demo", "model": "demo"}],
                  environ={"OPENAI_API_KEY": KEY})
    assert list(reg.assistants) == ["only"]


@pytest.mark.asyncio
async def test_providers_close():
    reg = configured({"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY})
    await reg.aclose()
