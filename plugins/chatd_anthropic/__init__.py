"""Anthropic provider: Claude models through the official `anthropic` SDK's streaming Messages API.

Configure it as a `[providers.NAME]` table with `type = "anthropic"` (the default when the
table is named `anthropic`). Keys, all optional:

- `api_key`, or `api_key_env` naming the variable that holds it (default `ANTHROPIC_API_KEY`);
- `base_url` (default `ANTHROPIC_BASE_URL`, else Anthropic's own);
- `timeout` (seconds, default 60), `max_retries` (default 2);
- `max_tokens`: the reply budget when the assistant sets none (Anthropic requires one;
  default 1024).

The system prompt (and any system message of the history) goes in the request's `system`
field; the other turns are sent as alternating user/assistant messages. Usage is read
from `message_start` and `message_delta`; the stop reason becomes chatd's finish_reason.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic

from chatd import hookimpl
from chatd import provider_kit as kit
from chatd.errors import ChatdError, ConfigError
from chatd.providers import Completion, CompletionRequest, Provider, Turn, Usage

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT_S = 60.0

CONFIG_KEYS = {"base_url", "api_key", "api_key_env", "timeout", "max_retries", "max_tokens"}

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "model_context_window_exceeded": "length", "refusal": "content_filter",
                "tool_use": "stop", "pause_turn": "stop"}

#: Error types inside the stream (`event: error`) that mean "try again later".
TRANSIENT_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}

_KEY_LIKE = re.compile(r"\b(?:sk-ant|sk|key)-[A-Za-z0-9_\-*.]{6,}")

#: The header a 429's `retry_after` is read from (seconds).
RETRY_AFTER_HEADERS = ("retry-after",)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's transport errors, which the SDK lets through while a stream is read."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        found.append(mod.TransportError)
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()

#: Everything a request or a stream may raise that `map_error` translates.
SDK_ERRORS: tuple[type[BaseException], ...] = (anthropic.AnthropicError, *TRANSPORT_ERRORS)


def scrub(text: str, secret: str | None) -> str:
    """Remove the API key, and anything that looks like one, from text shown to clients."""
    return kit.scrub(text, secret, _KEY_LIKE)


def _body_error_type(body: object) -> str | None:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return err["type"]
    return None


def _body_error_message(body: object) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return ""


def map_error(e: BaseException, assistant_name: str, secret: str | None, mid_stream: bool = False) -> ChatdError:
    """Translate an SDK or transport exception into the chatd error a client sees (never the key)."""
    if isinstance(e, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return kit.credentials_refused(assistant_name, e.status_code)
    if isinstance(e, anthropic.RateLimitError):
        return kit.rate_limited(assistant_name, e.response.headers, RETRY_AFTER_HEADERS)
    if isinstance(e, anthropic.APIStatusError):
        kind = _body_error_type(e.body)
        if e.status_code >= 500 or e.status_code in (408, 409) or kind in TRANSIENT_STREAM_ERRORS:
            return kit.unavailable(assistant_name, kind or f"HTTP {e.status_code}")
        detail = scrub(_body_error_message(e.body), secret)
        return kit.rejected(assistant_name, f"HTTP {e.status_code}{', ' + kind if kind else ''}", detail)
    if isinstance(e, anthropic.APITimeoutError):
        return kit.timed_out(assistant_name)
    if isinstance(e, anthropic.APIConnectionError) or isinstance(e, TRANSPORT_ERRORS):
        return kit.unreachable(assistant_name, mid_stream)
    return kit.failed(assistant_name, e)


def to_messages(turns: list[Turn]) -> tuple[str, list[dict[str, str]]]:
    """(system, messages): system turns joined; the rest merged into alternating user/assistant turns."""
    system = "\n\n".join(t.content for t in turns if t.role == "system" and t.content)
    messages: list[dict[str, str]] = []
    for t in turns:
        if t.role == "system" or not t.content:
            continue
        role = "assistant" if t.role == "assistant" else "user"
        if not messages and role == "assistant":
            continue  # the Messages API starts with a user turn
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + t.content
        else:
            messages.append({"role": role, "content": t.content})
    return system, messages


class AnthropicProvider(Provider):
    """Streams Claude replies through `AsyncAnthropic().messages.create(stream=True)`."""

    type_name = "anthropic"

    def __init__(self, config: dict[str, Any], environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        kit.check_keys("anthropic", config, CONFIG_KEYS)
        self._secret = kit.api_key(config, env, "ANTHROPIC_API_KEY", name="anthropic")
        self.base_url: str | None = config.get("base_url") or env.get("ANTHROPIC_BASE_URL") or None
        try:
            timeout = kit.number(config, "timeout", DEFAULT_TIMEOUT_S, float)
            max_retries = kit.number(config, "max_retries", 2, int)
            self.max_tokens = kit.number(config, "max_tokens", DEFAULT_MAX_TOKENS, int)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"anthropic provider: bad number: {e}") from None
        if timeout <= 0 or max_retries < 0 or self.max_tokens <= 0:
            raise ConfigError("anthropic provider: timeout and max_tokens must be positive, max_retries not negative")
        self.client = anthropic.AsyncAnthropic(
            api_key=self._secret, base_url=self.base_url,
            timeout=anthropic.Timeout(timeout, connect=min(timeout, 10.0)), max_retries=max_retries)

    def __repr__(self) -> str:
        return f"AnthropicProvider(base_url={self.base_url!r})"  # never the key

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        system, messages = to_messages(request.messages)
        params: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True,
                                  "max_tokens": request.max_tokens or self.max_tokens}
        if system:
            params["system"] = system
        extra = dict(request.assistant.options)
        if request.temperature is not None:
            # Newer SDKs dropped sampling parameters from their signature; the field still goes
            # on the wire for the models that take it.
            extra.setdefault("temperature", request.temperature)
        if extra:
            params["extra_body"] = extra
        return params

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield text deltas from `content_block_delta` events; usage and stop reason as they arrive."""
        name = request.assistant.name
        try:
            upstream = await self.client.messages.create(**self._params(request))
        except SDK_ERRORS as e:
            log.warning("assistant %s: request failed: %s", request.assistant.id, type(e).__name__)
            raise map_error(e, name, self._secret) from None
        usage = Usage()
        stopped = False
        finish = "stop"
        try:
            async for event in upstream:
                etype = event.type
                if etype == "message_start":
                    u = event.message.usage
                    usage.prompt_tokens = (u.input_tokens or 0) + (u.cache_creation_input_tokens or 0) \
                        + (u.cache_read_input_tokens or 0)
                    usage.completion_tokens = u.output_tokens or 0
                elif etype == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield event.delta.text
                elif etype == "message_delta":
                    if event.delta.stop_reason:
                        finish = STOP_REASONS.get(event.delta.stop_reason, "stop")
                    if event.usage is not None:
                        usage.completion_tokens = event.usage.output_tokens or usage.completion_tokens
                        if event.usage.input_tokens:
                            usage.prompt_tokens = event.usage.input_tokens + \
                                (event.usage.cache_creation_input_tokens or 0) + \
                                (event.usage.cache_read_input_tokens or 0)
                    completion.usage = usage
                elif etype == "message_stop":
                    stopped = True
        except SDK_ERRORS as e:
            log.warning("assistant %s: stream failed: %s", request.assistant.id, type(e).__name__)
            raise map_error(e, name, self._secret, mid_stream=True) from None
        finally:
            await upstream.close()  # on cancellation too: the server sees the disconnect
        if not stopped:
            raise kit.cut_short(name)
        completion.usage = usage
        completion.finish_reason = finish

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self.client.close()


@hookimpl
def register_providers(register: Callable[[str, Callable[[dict[str, Any]], Provider]], None]) -> None:
    """Register the `anthropic` provider type."""
    register("anthropic", AnthropicProvider)


@hookimpl
def default_assistants(environ: dict[str, str]) -> list[dict[str, Any]] | None:
    """With ANTHROPIC_API_KEY set and no assistants configured, offer a Claude assistant.

    It is the default unless an OpenAI one is offered too (then OpenAI's wins).
    """
    key = environ.get("ANTHROPIC_API_KEY")
    if not key:
        return None
    model = environ.get("ANTHROPIC_MODEL") or DEFAULT_MODEL
    pconf: dict[str, Any] = {"type": "anthropic", "api_key": key}
    if environ.get("ANTHROPIC_BASE_URL"):
        pconf["base_url"] = environ["ANTHROPIC_BASE_URL"]
    openai_too = bool(environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL"))
    return [{"id": "anthropic", "name": f"Claude ({model})", "provider": "anthropic", "model": model,
             "default": not openai_too, "provider_config": pconf}]
