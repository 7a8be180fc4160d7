"""The OpenAI provider against a local server speaking OpenAI's streaming wire format, through the real SDK."""
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
from chatd_openai import OpenAIProvider

KEY = "sk-test-SECRET0123456789abcdef"


@pytest_asyncio.fixture
async def provider(fake_llm):
    p = OpenAIProvider({"base_url": fake_llm.openai_url, "api_key": KEY, "max_retries": 1, "timeout": 5})
    yield p
    await p.aclose()


@pytest.mark.asyncio
async def test_streams_deltas_usage_and_finish_reason(provider, fake_llm):
    fake_llm.push(Behavior(deltas=["Hel", "lo", ", wor", "ld"], usage=(21, 4)))
    out = await drive(provider, make_request(history=[Turn("assistant", "Earlier answer")]))
    assert out.error is None
    assert out.deltas == ["Hel", "lo", ", wor", "ld"]
    assert out.completion.usage.to_dict() == {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
    assert out.completion.finish_reason == "stop"
    seen = fake_llm.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["model"] == "gpt-4o-mini" and seen.body["max_tokens"] == 100
    assert seen.body["temperature"] == 0.5
    assert seen.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "assistant", "content": "Earlier answer"},
                                     {"role": "user", "content": "Hi there"}]


@pytest.mark.asyncio
@pytest.mark.parametrize("upstream,expected", [("length", "length"), ("content_filter", "content_filter"),
                                               ("tool_calls", "stop")])
async def test_finish_reasons_are_mapped(provider, fake_llm, upstream, expected):
    fake_llm.push(Behavior(finish=upstream))
    out = await drive(provider, make_request())
    assert out.error is None and out.completion.finish_reason == expected


@pytest.mark.asyncio
async def test_one_instance_serves_several_assistants(provider, fake_llm):
    await drive(provider, make_request("model-a", options={"top_p": 0.9}))
    await drive(provider, make_request("model-b", max_tokens=None, temperature=None))
    a, b = fake_llm.requests
    assert a.body["model"] == "model-a" and a.body["top_p"] == 0.9
    assert b.body["model"] == "model-b" and "max_tokens" not in b.body and "temperature" not in b.body


@pytest.mark.asyncio
async def test_auth_failure_is_provider_error_without_the_key(provider, fake_llm, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"error": {"message": f"Incorrect API key provided: {KEY}. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.",
                      "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    fake_llm.push(Behavior(kind="status", status=401, body=body))
    out = await drive(provider, make_request(name="Helpful GPT"))
    assert isinstance(out.error, ProviderError) and out.error.code == "PROVIDER_ERROR"
    assert "Helpful GPT" in out.error.message and "API key" in out.error.message
    assert KEY not in out.error.message and "SECRET" not in out.error.message
    assert len(fake_llm.requests) == 1  # not retried
    assert KEY not in caplog.text and "SECRET0123" not in caplog.text


@pytest.mark.asyncio
async def test_rate_limit_is_retried_honouring_retry_after_then_unavailable(provider, fake_llm):
    body = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                      "code": "rate_limit_exceeded"}}
    fake_llm.push(Behavior(kind="status", status=429, body=body, headers={"retry-after": "1"}),
                  Behavior(kind="status", status=429, body=body, headers={"retry-after": "1"}))
    out = await drive(provider, make_request(name="Helpful GPT"))
    assert isinstance(out.error, ProviderUnavailable) and out.error.code == "PROVIDER_UNAVAILABLE"
    assert "Helpful GPT" in out.error.message and "rate limited" in out.error.message
    assert out.error.retry_after == 1.0
    assert len(fake_llm.requests) == 2  # one retry (max_retries=1)
    assert out.elapsed >= 0.95  # the SDK waited retry-after before retrying


@pytest.mark.asyncio
async def test_rate_limit_then_success_streams(provider, fake_llm):
    fake_llm.push(Behavior(kind="status", status=429, body={"error": {"message": "slow down"}},
                           headers={"retry-after-ms": "50"}), Behavior(deltas=["ok"]))
    out = await drive(provider, make_request())
    assert out.error is None and out.text == "ok" and len(fake_llm.requests) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_unavailable_after_retries(provider, fake_llm, status):
    body = {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}
    fake_llm.push(*[Behavior(kind="status", status=status, body=body)] * 2)
    out = await drive(provider, make_request(name="Helpful GPT"))
    assert isinstance(out.error, ProviderUnavailable)
    assert "Helpful GPT" in out.error.message and str(status) in out.error.message
    assert len(fake_llm.requests) == 2


@pytest.mark.asyncio
async def test_bad_request_is_provider_error_with_upstream_detail(provider, fake_llm):
    body = {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error",
                      "param": None, "code": "model_not_found"}}
    fake_llm.push(Behavior(kind="status", status=404, body=body))
    out = await drive(provider, make_request("nope"))
    assert isinstance(out.error, ProviderError) and "does not exist" in out.error.message


@pytest.mark.asyncio
async def test_hang_past_the_timeout_is_unavailable(fake_llm):
    p = OpenAIProvider({"base_url": fake_llm.openai_url, "api_key": KEY, "max_retries": 0, "timeout": 0.4})
    fake_llm.push(Behavior(kind="hang", hang_s=10))
    out = await drive_and_close(p, make_request(name="Helpful GPT"))
    assert isinstance(out.error, ProviderUnavailable)
    assert "Helpful GPT" in out.error.message and "in time" in out.error.message
    assert 0.3 < out.elapsed < 3


@pytest.mark.asyncio
async def test_stall_mid_stream_past_the_timeout_is_unavailable(fake_llm):
    p = OpenAIProvider({"base_url": fake_llm.openai_url, "api_key": KEY, "max_retries": 0, "timeout": 0.4})
    fake_llm.push(Behavior(deltas=["a", "b"], delay=1.5))
    out = await drive_and_close(p, make_request())
    assert isinstance(out.error, ProviderUnavailable) and out.elapsed < 3


@pytest.mark.asyncio
async def test_connection_refused_is_unavailable():
    p = OpenAIProvider({"base_url": f"http://127.0.0.1:{free_port()}/v1", "api_key": KEY, "max_retries": 0})
    out = await drive_and_close(p, make_request(name="Helpful GPT"))
    assert isinstance(out.error, ProviderUnavailable)
    assert "Helpful GPT" in out.error.message and "could not be reached" in out.error.message


@pytest.mark.asyncio
async def test_disconnect_after_n_chunks_keeps_partial_text_and_fails(provider, fake_llm):
    fake_llm.push(Behavior(kind="disconnect", deltas=["one ", "two ", "three ", "four"], after=2))
    out = await drive(provider, make_request(name="Helpful GPT"))
    assert out.deltas == ["one ", "two "]
    assert isinstance(out.error, ProviderUnavailable)
    assert "Helpful GPT" in out.error.message and "lost" in out.error.message
    assert len(fake_llm.requests) == 1  # a stream that started is never retried


@pytest.mark.asyncio
async def test_stream_ending_without_finish_is_an_error(provider, fake_llm):
    fake_llm.push(Behavior(kind="disconnect", deltas=["one ", "two "], after=2, clean_close=True))
    out = await drive(provider, make_request())
    assert out.deltas == ["one ", "two "] and isinstance(out.error, ProviderUnavailable)


@pytest.mark.asyncio
async def test_error_event_mid_stream_is_unavailable(provider, fake_llm):
    fake_llm.push(Behavior(kind="stream_error", deltas=["a", "b", "c"], after=1))
    out = await drive(provider, make_request())
    assert out.deltas == ["a"] and isinstance(out.error, ProviderUnavailable)


@pytest.mark.asyncio
async def test_cancellation_closes_the_upstream_stream(provider, fake_llm):
    fake_llm.push(Behavior(deltas=[f"w{i} " for i in range(200)], delay=0.02))
    got = await cancel_after(provider, make_request())
    await asyncio.wait_for(fake_llm.disconnected.wait(), 3)
    assert fake_llm.disconnects == 1 and fake_llm.completed == 0
    assert len(got) < 50


def test_config_is_validated():
    with pytest.raises(ConfigError, match="unknown setting"):
        OpenAIProvider({"api_key": KEY, "base_ulr": "x"})
    with pytest.raises(ConfigError, match="no API key"):
        OpenAIProvider({}, environ={})
    with pytest.raises(ConfigError, match="max_tokens_param"):
        OpenAIProvider({"api_key": KEY, "max_tokens_param": "tokens"}, environ={})


@pytest.mark.asyncio
async def test_key_from_environment_and_placeholder_for_keyless_servers(fake_llm):
    p = OpenAIProvider({"api_key_env": "MY_KEY"}, environ={"MY_KEY": KEY, "OPENAI_BASE_URL": fake_llm.openai_url})
    q = OpenAIProvider({}, environ={"OPENAI_BASE_URL": fake_llm.openai_url})
    try:
        assert KEY not in repr(p)
        assert (await drive(p, make_request())).error is None
        assert (await drive(q, make_request())).error is None
    finally:
        await p.aclose()
        await q.aclose()
    assert fake_llm.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert fake_llm.requests[1].headers["Authorization"].startswith("Bearer sk-no-key")


@pytest.mark.asyncio
async def test_max_completion_tokens_param(fake_llm):
    p = OpenAIProvider({"base_url": fake_llm.openai_url, "api_key": KEY, "max_tokens_param": "max_completion_tokens"})
    try:
        await drive(p, make_request(max_tokens=42))
    finally:
        await p.aclose()
    body = fake_llm.requests[0].body
    assert body["max_completion_tokens"] == 42 and "max_tokens" not in body
