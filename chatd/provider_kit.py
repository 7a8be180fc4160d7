"""Building blocks for provider plugins: settings, API keys, and the errors clients see.

Public API for third-party providers, used by the bundled OpenAI and Anthropic ones. Each SDK
keeps its own error *mapping* (which exception means what); the errors it maps to are made
here, so every provider words them alike, names the assistant, and never echoes a key.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, overload

from chatd.errors import ConfigError, ProviderError, ProviderUnavailable

__all__ = [
    "KEY_LIKE", "api_key", "check_keys", "credentials_refused", "cut_short", "failed", "number", "rate_limited",
    "rejected", "retry_after", "scrub", "timed_out", "unavailable", "unreachable",
]

N = TypeVar("N", int, float)

#: Text that looks like an API key (`sk-…`, `key-…`, `rk-…`, `pk-…`), scrubbed from messages.
KEY_LIKE = re.compile(r"\b(?:sk|key|rk|pk)-[A-Za-z0-9_\-*.]{6,}")

#: How much of an upstream message `scrub` keeps.
MAX_DETAIL_CHARS = 300


# --- Settings -----------------------------------------------------------------------------------

def check_keys(name: str, config: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a `[providers.*]` table with keys outside `known`: ConfigError naming them and the known ones."""
    known = set(known)
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"{name} provider: unknown setting(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(known))})")


@overload
def api_key(config: Mapping[str, Any], environ: Mapping[str, str] | None, default_env: str, *, name: str,
            required: Literal[True] = ..., hint: str = ...) -> str: ...


@overload
def api_key(config: Mapping[str, Any], environ: Mapping[str, str] | None, default_env: str, *, name: str,
            required: bool, hint: str = ...) -> str | None: ...


def api_key(config: Mapping[str, Any], environ: Mapping[str, str] | None, default_env: str, *, name: str,
            required: bool = True, hint: str = "") -> str | None:
    """The table's `api_key`, else the variable named by `api_key_env` (default `default_env`) in `environ`.

    `environ` None means `os.environ`. A missing key is None, or, when `required`, a ConfigError
    "NAME provider: no API key: set api_key or VARIABLE" followed by `hint`.
    """
    env = os.environ if environ is None else environ
    key_env = str(config.get("api_key_env", default_env))
    key = config.get("api_key") or env.get(key_env) or None
    if key:
        return str(key)
    if required:
        raise ConfigError(f"{name} provider: no API key: set api_key or {key_env}{hint}")
    return None


def number(config: Mapping[str, Any], key: str, default: N, kind: Callable[[Any], N]) -> N:
    """`config[key]` (or `default`) converted by `kind` (`int` or `float`).

    A value that does not convert raises the conversion's TypeError or ValueError: catch it and
    raise a ConfigError naming your provider and the setting.
    """
    return kind(config.get(key, default))


# --- Text shown to clients ------------------------------------------------------------------------

def scrub(text: str, secret: str | None, pattern: re.Pattern[str] = KEY_LIKE) -> str:
    """`text` without the API key `secret` nor anything `pattern` takes for a key, cut to 300 characters."""
    if secret:
        text = text.replace(secret, "[key]")
    return pattern.sub("[key]", text)[:MAX_DETAIL_CHARS]


def retry_after(headers: Mapping[str, str] | None,
                names: Iterable[str] = ("retry-after-ms", "retry-after")) -> float | None:
    """Seconds to wait, from the first of the `names` headers present (`…-ms` ones count milliseconds).

    None without such a header, or when its value is not a number.
    """
    if headers is None:
        return None
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / (1000.0 if name.endswith("-ms") else 1.0))
            except ValueError:
                return None
    return None


# --- The errors a provider raises -------------------------------------------------------------------

def credentials_refused(assistant: str, status: int) -> ProviderError:
    """HTTP 401/403: the key was refused (PROVIDER_ERROR)."""
    return ProviderError(f"{assistant}: the AI provider refused the credentials (HTTP {status}); check the API key")


def rate_limited(assistant: str, headers: Mapping[str, str] | None,
                 names: Iterable[str] = ("retry-after-ms", "retry-after")) -> ProviderUnavailable:
    """HTTP 429 once the SDK's retries are spent, with the upstream `retry-after` (PROVIDER_UNAVAILABLE)."""
    return ProviderUnavailable(f"{assistant} is rate limited by its AI provider; try again later",
                               retry_after=retry_after(headers, names))


def unavailable(assistant: str, answer: str) -> ProviderUnavailable:
    """A transient upstream answer such as "HTTP 503" or "overloaded_error" (PROVIDER_UNAVAILABLE)."""
    return ProviderUnavailable(f"{assistant} is unavailable: the AI provider answered {answer}")


def timed_out(assistant: str) -> ProviderUnavailable:
    """No answer within the timeout (PROVIDER_UNAVAILABLE)."""
    return ProviderUnavailable(f"{assistant} is unavailable: the AI provider did not answer in time")


def unreachable(assistant: str, mid_stream: bool = False) -> ProviderUnavailable:
    """The connection failed, before the reply or (`mid_stream`) while it streamed (PROVIDER_UNAVAILABLE)."""
    if mid_stream:
        return ProviderUnavailable(f"{assistant}: the connection to the AI provider was lost mid-reply")
    return ProviderUnavailable(f"{assistant} is unavailable: the AI provider could not be reached")


def rejected(assistant: str, status: str, detail: str) -> ProviderError:
    """The request was refused (HTTP 400/404/422…); `status` e.g. "HTTP 400", `detail` already scrubbed."""
    return ProviderError(f"{assistant}: the AI provider rejected the request ({status}): {detail}")


def cut_short(assistant: str) -> ProviderUnavailable:
    """The stream ended without its final event (PROVIDER_UNAVAILABLE)."""
    return ProviderUnavailable(f"{assistant}: the AI provider ended the stream before the reply was complete")


def failed(assistant: str, exc: BaseException) -> ProviderError:
    """Anything else: named by the exception's type only, never its text (PROVIDER_ERROR)."""
    return ProviderError(f"{assistant}: the AI provider failed ({type(exc).__name__})")
