"""Conversation titles: after the first exchange, a short title from the conversation's assistant.

The assistant is asked with a small budget (`purpose="title"`, 16 tokens, a few seconds);
when it fails or says nothing usable, the title is the first words of the first message.
The title is stored through `ChatService.update_conversation`, so every member's tabs get
a `conversation_updated`. A conversation someone renamed meanwhile is left alone.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from chatd.auth import Principal
from chatd.providers import Completion, CompletionRequest, Turn

if TYPE_CHECKING:
    from chatd.chat import ChatService

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New conversation"
TITLE_MAX_TOKENS = 16
TITLE_TIMEOUT_S = 10.0
TITLE_MAX_CHARS = 60
FALLBACK_WORDS = 6
PROMPT = ("Write a title of at most six words for the conversation below. Answer with the title "
          "only: no quotes, no trailing punctuation.")



def fallback_title(text: str) -> str:
    """The first few words of a message, shortened to fit a title."""
    words = text.split()
    title = " ".join(words[:FALLBACK_WORDS])
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    elif len(words) > FALLBACK_WORDS:
        title += "…"
    return title or DEFAULT_TITLE


def clean_title(raw: str) -> str:
    """A model's answer made into a title: first line, no quotes or label, no trailing punctuation."""
    line = next((ln for ln in raw.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(?:title\s*:\s*)", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`*#“”‘’ ").rstrip(".!:;,").strip()
    if len(line) > TITLE_MAX_CHARS:
        line = line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return line


async def generate_title(chat: ChatService, assistant_id: str, first_user: str, first_reply: str) -> str:
    """Ask the assistant for a title; the fallback title when that fails or is empty."""
    try:
        assistant = chat.plugins.assistant(assistant_id)
        provider = chat.plugins.provider_for(assistant)
        messages = [Turn("system", PROMPT),
                    Turn("user", f"User: {first_user[:2000]}\n\nAssistant: {first_reply[:2000]}")]
        request = CompletionRequest(assistant=assistant, messages=messages, model=assistant.model,
                                    max_tokens=TITLE_MAX_TOKENS, purpose="title")

        async def collect() -> str:
            parts = []
            agen = provider.stream(request, Completion())
            try:
                async for delta in agen:
                    parts.append(delta)
            finally:
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    await aclose()
            return "".join(parts)

        title = clean_title(await asyncio.wait_for(collect(), TITLE_TIMEOUT_S))
        if title:
            return title
    except asyncio.CancelledError:
        raise
    except Exception as e:  # any failure: the plain fallback
        log.info("title generation failed (%s); using the first words", type(e).__name__)
    return fallback_title(first_user)


class Titler:
    """Gives conversations a title after their first exchange, in background tasks of one ChatService."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self._in_progress: set[Any] = set()  # conversations being titled
        self._tasks: set[asyncio.Task] = set()

    async def maybe_title(self, conversation_id: Any, reply_message: dict) -> None:
        """After the first complete exchange of a conversation still titled by default, give it a title."""
        chat = self.chat
        if reply_message.get("status") != "complete" or conversation_id in self._in_progress or chat.closing:
            return
        self._in_progress.add(conversation_id)
        try:
            conv = await chat.store.get_conversation(conversation_id)
            if conv is None or conv.get("deleted") or conv.get("title") != DEFAULT_TITLE:
                return
            history = await chat.store.history(conversation_id, reply_message["id"], 4)
            users = [m for m in history if m["message_type"] == "user"]
            if not users:
                return
            title = await generate_title(chat, reply_message.get("assistant_id") or conv["assistant_id"],
                                         users[0]["content"], reply_message.get("content", ""))
            conv = await chat.store.get_conversation(conversation_id)
            if conv is None or conv.get("deleted") or conv.get("title") != DEFAULT_TITLE:
                return  # renamed or deleted while we asked
            if chat.closing:
                return
            owner = Principal(user_id=conv["owner_id"])
            await chat.update_conversation(owner, conversation_id, title=title, assistant_id=None,
                                           add_member_ids=None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("titling conversation %s failed", conversation_id)
        finally:
            self._in_progress.discard(conversation_id)

    def schedule(self, conversation_id: Any, reply_message: dict) -> asyncio.Task | None:
        """Run `maybe_title` in the background (it never fails the reply); the task, or None when not needed."""
        if reply_message.get("status") != "complete" or self.chat.closing:
            return None
        task = asyncio.create_task(self.maybe_title(conversation_id, reply_message),
                                   name=f"title-{conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel titles still being generated."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
