"""The history a provider sees: system prompt first, trimmed to the assistant's context budget."""
from __future__ import annotations

from chatd.providers import Assistant, Turn

CHARS_PER_TOKEN = 4  # a documented estimate when no tokenizer is known for the model


def estimate_tokens(text: str) -> int:
    """Rough token count: one token per four characters, at least one for non-empty text."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def build_context(assistant: Assistant, history: list[dict]) -> list[Turn]:
    """Turns for the provider: the newest messages that fit the budget, system prompt first."""
    budget = assistant.context_tokens - (assistant.max_tokens or 0)
    turns: list[Turn] = []
    used = estimate_tokens(assistant.system_prompt) if assistant.system_prompt else 0
    for msg in reversed(history):
        cost = estimate_tokens(msg["content"]) + 4
        if turns and used + cost > budget:
            break
        used += cost
        turns.append(Turn(role=msg["message_type"], content=msg["content"]))
    turns.reverse()
    if assistant.system_prompt:
        turns.insert(0, Turn(role="system", content=assistant.system_prompt))
    return turns
