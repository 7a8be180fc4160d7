"""OpenAI provider: OpenAI itself and any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

Configure it as a `[providers.NAME]` table with `type = "openai"` (the default when the
table is named `openai`). Keys, all optional:

- `base_url`: the API root, e.g. `http://127.0.0.1:11434/v1` (default `OPENAI_BASE_URL`,
  else OpenAI's own);
- `api_key`, or `api_key_env` naming the variable that holds it (default `OPENAI_API_KEY`);
  a compatible server that needs none gets a placeholder;
- `organization`, `project`: sent as OpenAI's headers;
- `timeout` (seconds, default 60: connect, and each read of the stream),
  `max_retries` (default 2: the SDK retries 408/409/429/5xx and connection errors);
- `max_tokens_param`: `max_tokens` (default, what compatible servers understand) or
  `max_completion_tokens` (OpenAI's reasoning models need it).

One provider instance serves every assistant that names it; the model comes from the
assistant. An assistant's `options` table is sent as extra request fields (`top_p`,
`seed`, `stop`…).

The provider lists the server's models (`GET /models`) for chatd's discovery
(`chatd.discovery`): an `[[assistants]]` entry with `discover = true` offers every served
model, and a configured model the server lacks fails `/readyz`. With `OPENAI_BASE_URL` in the
environment and no assistants configured, every served model is offered, the first the
default (or `OPENAI_MODEL`, when set and served).
"""
from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai

from chatd import hookimpl
from chatd import provider_kit as kit
from chatd.errors import ChatdError, ConfigError, ProviderUnavailable
from chatd.providers import Completion, CompletionRequest, Provider, Usage

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT_S = 60.0
LIST_TIMEOUT_S = 4.0  # listing models must fit in chatd.discovery.LIST_TIMEOUT_S
NO_KEY = "sk-no-key-required"  # compatible servers ignore the key, the SDK insists on one

CONFIG_KEYS = {"base_url", "api_key", "api_key_env", "organization", "project", "timeout",
               "max_retries", "max_tokens_param"}

FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter",
                  "tool_calls": "stop", "function_call": "stop"}


def scrub(text: str, secret: str | None) -> str:
    """Remove the API key, and anything that looks like one, from text shown to clients."""
    return kit.scrub(text, None if secret == NO_KEY else secret)


def map_error(e: Exception, assistant_name: str, secret: str | None, mid_stream: bool = False) -> ChatdError:
    """Translate an SDK exception into the chatd error a client sees (never echoing the key)."""
    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return kit.credentials_refused(assistant_name, e.status_code)
    if isinstance(e, openai.RateLimitError):
        return kit.rate_limited(assistant_name, e.response.headers)
    if isinstance(e, openai.APIStatusError) and (e.status_code >= 500 or e.status_code in (408, 409)):
        return kit.unavailable(assistant_name, f"HTTP {e.status_code}")
    if isinstance(e, openai.APITimeoutError):
        return kit.timed_out(assistant_name)
    if isinstance(e, openai.APIConnectionError):
        return kit.unreachable(assistant_name, mid_stream)
    if isinstance(e, openai.APIStatusError):
        detail = scrub(str(getattr(e, "message", "") or ""), secret)
        return kit.rejected(assistant_name, f"HTTP {e.status_code}", detail)
    if isinstance(e, openai.APIError):  # an error event inside the stream
        return ProviderUnavailable(f"{assistant_name}: the AI provider failed mid-reply: "
                                   f"{scrub(str(e.message), secret)}")
    return kit.failed(assistant_name, e)


class OpenAIProvider(Provider):
    """Streams chat completions from an OpenAI-compatible API through the official SDK."""

    type_name = "openai"

    def __init__(self, config: dict[str, Any], environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        kit.check_keys("openai", config, CONFIG_KEYS)
        self.base_url: str | None = config.get("base_url") or env.get("OPENAI_BASE_URL") or None
        self._secret = kit.api_key(config, env, "OPENAI_API_KEY", name="openai", required=not self.base_url,
                                   hint=" (or base_url for a server that needs none)") or NO_KEY
        self.max_tokens_param = str(config.get("max_tokens_param", "max_tokens"))
        if self.max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError("openai provider: max_tokens_param must be max_tokens or max_completion_tokens")
        try:
            timeout = kit.number(config, "timeout", DEFAULT_TIMEOUT_S, float)
            max_retries = kit.number(config, "max_retries", 2, int)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"openai provider: bad timeout or max_retries: {e}") from None
        if timeout <= 0 or max_retries < 0:
            raise ConfigError("openai provider: timeout must be positive and max_retries not negative")
        self.client = openai.AsyncOpenAI(
            api_key=self._secret, base_url=self.base_url,
            organization=config.get("organization") or None, project=config.get("project") or None,
            timeout=openai.Timeout(timeout, connect=min(timeout, 10.0)), max_retries=max_retries)

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r})"  # never the key

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": t.role, "content": t.content} for t in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.max_tokens:
            params[self.max_tokens_param] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.assistant.options:
            params["extra_body"] = dict(request.assistant.options)
        return params

    async def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield content deltas; usage comes from the final usage chunk, finish_reason from the last choice."""
        name = request.assistant.name
        try:
            upstream = await self.client.chat.completions.create(**self._params(request))
        except openai.OpenAIError as e:
            log.warning("assistant %s: request failed: %s", request.assistant.id, type(e).__name__)
            raise map_error(e, name, self._secret) from None
        finish: str | None = None
        try:
            async for chunk in upstream:
                if chunk.usage is not None:
                    completion.usage = Usage(prompt_tokens=chunk.usage.prompt_tokens or 0,
                                             completion_tokens=chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    if choice.finish_reason:
                        finish = FINISH_REASONS.get(choice.finish_reason, "stop")
        except openai.OpenAIError as e:
            log.warning("assistant %s: stream failed: %s", request.assistant.id, type(e).__name__)
            raise map_error(e, name, self._secret, mid_stream=True) from None
        finally:
            await upstream.close()  # on cancellation too: the server sees the disconnect
        if finish is None and completion.usage is None:
            raise kit.cut_short(name)
        completion.finish_reason = finish or "stop"

    async def list_models(self) -> list[str] | None:
        """`GET /models`: the served model ids; None when the server has no such endpoint (404/405)."""
        try:
            page = await self.client.with_options(max_retries=0, timeout=LIST_TIMEOUT_S).models.list()
            return [m.id async for m in page]
        except openai.NotFoundError:
            return None
        except openai.APIStatusError as e:
            if e.status_code == 405:
                return None
            raise map_error(e, f"provider at {self.base_url or 'api.openai.com'}", self._secret) from None
        except openai.OpenAIError as e:
            raise map_error(e, f"provider at {self.base_url or 'api.openai.com'}", self._secret) from None

    async def check(self) -> bool:
        """Whether the server answers its model listing (or has none to answer)."""
        try:
            await self.list_models()
        except ChatdError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self.client.close()


@hookimpl
def register_providers(register: Callable[[str, Callable[[dict[str, Any]], Provider]], None]) -> None:
    """Register the `openai` provider type."""
    register("openai", OpenAIProvider)


@hookimpl
def default_assistants(environ: dict[str, str]) -> list[dict[str, Any]] | None:
    """With OPENAI_API_KEY or OPENAI_BASE_URL set and no assistants configured, offer OpenAI (the default).

    With OPENAI_BASE_URL (Ollama, vLLM, llama.cpp, LM Studio) every model the server lists
    becomes an assistant, the first the default; OPENAI_MODEL, when set, is offered first and is
    the default, and `/readyz` fails while the server does not serve it. With the key alone
    (OpenAI itself, whose list holds embedding and image models too) OPENAI_MODEL, else
    gpt-4o-mini, is the one assistant.
    """
    key, base_url = environ.get("OPENAI_API_KEY"), environ.get("OPENAI_BASE_URL")
    if not key and not base_url:
        return None
    pconf: dict[str, Any] = {"type": "openai"}
    if base_url:
        pconf["base_url"] = base_url
    if key:
        pconf["api_key"] = key
    offered: list[dict[str, Any]] = []
    model = environ.get("OPENAI_MODEL") or (None if base_url else DEFAULT_MODEL)
    if model:
        label = "OpenAI-compatible" if base_url else "OpenAI"
        offered.append({"id": "openai", "name": f"{label} ({model})", "provider": "openai", "model": model,
                        "default": True, "provider_config": pconf})
    if base_url:
        offered.append({"id": "openai-models", "provider": "openai", "discover": True, "default": True,
                        "provider_config": pconf})
    return offered
