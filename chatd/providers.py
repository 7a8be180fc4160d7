"""The provider interface plugins implement, and the assistants that use providers."""
from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from chatd.models import Usage as UsageRecord


@dataclass
class Turn:
    """One message of the conversation history as a provider sees it."""

    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class Usage:
    """Token counts of one reply."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict:
        """The protocol's `usage` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    def record(self) -> UsageRecord:
        """The counts as the stored record (`chatd.models.Usage`)."""
        return UsageRecord.of(self.prompt_tokens, self.completion_tokens)


@dataclass
class Assistant:
    """A named assistant: a provider, a model and how to call it."""

    id: str
    name: str
    provider: str
    model: str
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    context_tokens: int = 8000
    default: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def public(self, provider_type: str) -> dict:
        """The assistant as listed by `GET /api/v1/assistants`."""
        return {
            "id": self.id,
            "name": self.name,
            "provider": provider_type,
            "model": self.model,
            "default": self.default,
        }


@dataclass
class CompletionRequest:
    """What chatd asks a provider for: the history (system prompt first) and settings."""

    assistant: Assistant
    messages: list[Turn]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    purpose: str = "reply"  # "reply" or "title"


@dataclass
class Completion:
    """What a provider reports besides the text: filled in while or after it streams."""

    usage: Usage | None = None
    finish_reason: str = "stop"


class Provider(abc.ABC):
    """An AI backend. It only yields text deltas and reports usage; chatd does the rest."""

    #: The provider type's name, e.g. "openai"; shown in the assistants list.
    type_name: str = "provider"

    @abc.abstractmethod
    def stream(self, request: CompletionRequest, completion: Completion) -> AsyncIterator[str]:
        """Yield text deltas of the reply; set `completion.usage`/`finish_reason` by the end.

        Raise `chatd.errors.ProviderError` or `ProviderUnavailable` on failure. chatd
        cancels the iteration (and calls `aclose`) when the reply is stopped; close any
        upstream connection then.
        """

    async def check(self) -> bool:
        """Whether the provider is usable now (for /readyz); cheap, no tokens spent."""
        return True

    async def list_models(self) -> list[str] | None:
        """The ids of the models the server serves, in its order; None when this provider cannot list them.

        chatd asks at start-up, on `GET /api/v1/assistants?refresh=1` and from `/readyz`
        (see `chatd.discovery`). Raise `ProviderUnavailable` when the server could not be asked;
        chatd then keeps the models it knew. Cheap: no tokens spent.
        """
        return None

    async def aclose(self) -> None:
        """Release clients and connections at shutdown."""


#: A provider factory gets its `[providers.NAME]` config table and returns a Provider.
ProviderFactory = Callable[[dict[str, Any]], Provider]
