"""The Anthropic provider against a local server speaking Anthropic's streaming wire format, through the real SDK."""
from __future__ import annotations

import asyncio
import logging

import pytest
import pytest_asyncio
from llm_fakes import Behavior
from provider_helpers import cancel_after, drive, drive_and_close, make_request

from chatd.errors import ConfigError, ProviderError, ProviderUnavailable
from chatd.providers import Turn
from chatd.testing import free_port
from chatd_anthropic import AnthropicProvider, to_messages

KEY = "sk-ant-api03-SECRET0123456789abcdef"
MODEL = "claude-test-1"


@pytest_asyncio.fixture
async def provider(fake_llm):
    p = AnthropicProvider({"base_url": fake_llm.anthropic_url, "api_key": KEY, "max_retries": 1, "timeout": 5})
    yield p
    await p.aclose()


@pytest.mark.asyncio
async def test_streams_text_usage_and_stop_reason(provider, fake_llm):
    fake_llm.push(Behavior(deltas=["Hel", "lo", " there"], usage=(25, 9)))
    out = await drive(provider, make_request(MODEL, history=[Turn("assistant", "Earlier"), Turn("user", "More")]))
    assert out.error is None and out.deltas == ["Hel", "lo", " there"]
    assert out.completion.usage.to_dict() == {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}
    assert out.completion.finish_reason == "stop"
    seen = fake_llm.requests[0]
    assert seen.path == "/v1/messages"
    assert KEY in (seen.headers.get("X-Api-Key"), seen.headers.get("Authorization", "").removeprefix("Bearer "))
    assert "Anthropic-Version" in seen.headers
    assert seen.body["system"] == "Be brief."  # the Anthropic way, not a message
    assert seen.body["stream"] is True and seen.body["model"] == MODEL
    assert seen.body["max_tokens"] == 100 and seen.body["temperature"] == 0.5
    assert seen.body["messages"] == [{"role": "user", "content": "More\n\nHi there"}]


@pytest.mark.asyncio
@pytest.mark.parametrize("stop,expected", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                           ("refusal", "content_filter"), ("tool_use", "stop")])
async def test_stop_reasons_are_mapped(provider, fake_llm, stop, expected):
    fake_llm.push(Behavior(finish=stop))
    out = await drive(provider, make_request(MODEL))
    assert out.error is None and out.completion.finish_reason == expected


@pytest.mark.asyncio
async def test_default_max_tokens_when_the_assistant_sets_none(fake_llm):
    p = AnthropicProvider({"base_url": fake_llm.anthropic_url, "api_key": KEY, "max_tokens": 321})
    try:
        await drive(p, make_request(MODEL, max_tokens=None, temperature=None, system=""))
    finally:
        await p.aclose()
    body = fake_llm.requests[0].body
    assert body["max_tokens"] == 321 and "system" not in body and "temperature" not in body


def test_history_becomes_alternating_turns_with_system_apart():
    system, messages = to_messages([Turn("system", "S1"), Turn("assistant", "orphan"), Turn("user", "u1"),
                                    Turn("system", "S2"), Turn("user", "u2"), Turn("assistant", "a1"),
                                    Turn("assistant", "a2"), Turn("user", "")])
    assert system == "S1\n\nS2"
    assert messages == [{"role": "user", "content": "u1\n\nu2"}, {"role": "assistant", "content": "a1\n\na2"}]


@pytest.mark.asyncio
async def test_auth_failure_is_provider_error_without_the_key(provider, fake_llm, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {KEY}"},
            "request_id": "req_011"}
    fake_llm.push(Behavior(kind="status", status=401, body=body))
    out = await drive(provider, make_request(MODEL, name="Claude Test"))
    assert isinstance(out.error, ProviderError) and out.error.code == "PROVIDER_ERROR"
    assert "Claude Test" in out.error.message and KEY not in out.error.message
    assert len(fake_llm.requests) == 1
    assert KEY not in caplog.text and "SECRET0123" not in caplog.text


@pytest.mark.asyncio
async def test_rate_limit_honours_retry_after_then_unavailable(provider, fake_llm):
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"}}
    fake_llm.push(*[Behavior(kind="status", status=429, body=body, headers={"retry-after": "1"})] * 2)
    out = await drive(provider, make_request(MODEL, name="Claude Test"))
    assert isinstance(out.error, ProviderUnavailable) and "Claude Test" in out.error.message
    assert out.error.retry_after == 1.0 and len(fake_llm.requests) == 2 and out.elapsed >= 0.95


@pytest.mark.asyncio
@pytest.mark.parametrize("status,kind", [(500, "api_error"), (529, "overloaded_error")])
async def test_server_errors_are_unavailable(provider, fake_llm, status, kind):
    body = {"type": "error", "error": {"type": kind, "message": "boom"}}
    fake_llm.push(*[Behavior(kind="status", status=status, body=body)] * 2)
    out = await drive(provider, make_request(MODEL, name="Claude Test"))
    assert isinstance(out.error, ProviderUnavailable) and "Claude Test" in out.error.message
    assert len(fake_llm.requests) == 2


@pytest.mark.asyncio
async def test_invalid_request_is_provider_error_with_detail(provider, fake_llm):
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "model: not found"}}
    fake_llm.push(Behavior(kind="status", status=400, body=body))
    out = await drive(provider, make_request(MODEL))
    assert isinstance(out.error, ProviderError) and "model: not found" in out.error.message


@pytest.mark.asyncio
async def test_hang_past_the_timeout_is_unavailable(fake_llm):
    p = AnthropicProvider({"base_url": fake_llm.anthropic_url, "api_key": KEY, "max_retries": 0, "timeout": 0.4})
    fake_llm.push(Behavior(kind="hang", hang_s=10))
    out = await drive_and_close(p, make_request(MODEL, name="Claude Test"))
    assert isinstance(out.error, ProviderUnavailable) and "in time" in out.error.message
    assert 0.3 < out.elapsed < 3


@pytest.mark.asyncio
async def test_stall_mid_stream_past_the_timeout_is_unavailable(fake_llm):
    p = AnthropicProvider({"base_url": fake_llm.anthropic_url, "api_key": KEY, "max_retries": 0, "timeout": 0.4})
    fake_llm.push(Behavior(deltas=["a", "b"], delay=1.5))
    out = await drive_and_close(p, make_request(MODEL))
    assert isinstance(out.error, ProviderUnavailable) and out.elapsed < 3


@pytest.mark.asyncio
async def test_connection_refused_is_unavailable():
    p = AnthropicProvider({"base_url": f"http://127.0.0.1:{free_port()}", "api_key": KEY, "max_retries": 0})
    out = await drive_and_close(p, make_request(MODEL, name="Claude Test"))
    assert isinstance(out.error, ProviderUnavailable) and "could not be reached" in out.error.message


@pytest.mark.asyncio
async def test_disconnect_after_n_chunks_keeps_partial_text_and_fails(provider, fake_llm):
    fake_llm.push(Behavior(kind="disconnect", deltas=["one ", "two ", "three "], after=2))
    out = await drive(provider, make_request(MODEL, name="Claude Test"))
    assert out.deltas == ["one ", "two "]
    assert isinstance(out.error, ProviderUnavailable) and "lost" in out.error.message
    assert len(fake_llm.requests) == 1


@pytest.mark.asyncio
async def test_stream_ending_without_message_stop_is_an_error(provider, fake_llm):
    fake_llm.push(Behavior(kind="disconnect", deltas=["one ", "two "], after=1, clean_close=True))
    out = await drive(provider, make_request(MODEL))
    assert out.deltas == ["one "] and isinstance(out.error, ProviderUnavailable)


@pytest.mark.asyncio
async def test_error_event_mid_stream_is_unavailable(provider, fake_llm):
    fake_llm.push(Behavior(kind="stream_error", deltas=["a", "b"], after=1))
    out = await drive(provider, make_request(MODEL, name="Claude Test"))
    assert out.deltas == ["a"]
    assert isinstance(out.error, ProviderUnavailable) and "overloaded" in out.error.message


@pytest.mark.asyncio
async def test_cancellation_closes_the_upstream_stream(provider, fake_llm):
    fake_llm.push(Behavior(deltas=[f"w{i} " for i in range(200)], delay=0.02))
    got = await cancel_after(provider, make_request(MODEL))
    await asyncio.wait_for(fake_llm.disconnected.wait(), 3)
    assert fake_llm.disconnects == 1 and fake_llm.completed == 0 and len(got) < 50


def test_config_is_validated():
    with pytest.raises(ConfigError, match="unknown setting"):
        AnthropicProvider({"api_key": KEY, "modle": "x"})
    with pytest.raises(ConfigError, match="no API key"):
        AnthropicProvider({}, environ={})
    p = AnthropicProvider({}, environ={"ANTHROPIC_API_KEY": KEY})
    assert KEY not in repr(p)
