"""Conversation titles: after the first exchange, a short title from the conversation's assistant.

The assistant is asked with a small budget (`purpose="title"`, 16 tokens, a few seconds);
when it fails or says nothing usable, the title is the first words of the first message.
The titler subscribes to finished replies (`ReplyManager.on_finished`) and stores the title
through the same change as a user's rename (`ChatService.rename`), so every member's tabs get
a `conversation_updated`. A conversation someone renamed meanwhile is left alone.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from chatd.chat import DEFAULT_TITLE
from chatd.models import Conversation, Id, Message
from chatd.plugins import PluginRegistry
from chatd.providers import Completion, CompletionRequest, Turn
from chatd.store import Store

log = logging.getLogger(__name__)

#: Stores a title as a conversation change: (conversation id, title) → the renamed conversation.
Rename = Callable[[Id, str], Awaitable[object]]
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


async def generate_title(plugins: PluginRegistry, assistant_id: str, first_user: str, first_reply: str) -> str:
    """Ask the assistant for a title; the fallback title when that fails or is empty."""
    try:
        assistant = plugins.assistant(assistant_id)
        provider = plugins.provider_for(assistant)
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
    """Gives conversations a title after their first exchange, in background tasks."""

    def __init__(self, plugins: PluginRegistry, store: Store, rename: Rename) -> None:
        self.plugins = plugins
        self.store = store
        self.rename = rename
        self.closed = False
        self._in_progress: set[Id] = set()  # conversations being titled
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def _untitled(conv: Conversation | None) -> bool:
        return conv is not None and not conv.deleted and conv.title == DEFAULT_TITLE

    async def maybe_title(self, reply: Message, conv: Conversation) -> None:
        """After the first complete exchange of a conversation still titled by default, give it a title."""
        cid = reply.conversation_id
        if reply.status != "complete" or cid in self._in_progress or self.closed or not self._untitled(conv):
            return
        self._in_progress.add(cid)
        try:
            history = await self.store.history(cid, reply.id, 4)
            users = [m for m in history if m.message_type == "user"]
            if not users:
                return
            title = await generate_title(self.plugins, reply.assistant_id or conv.assistant_id, users[0].content,
                                         reply.content)
            if self.closed or not self._untitled(await self.store.get_conversation(cid)):
                return  # renamed or deleted while we asked, or shutting down
            await self.rename(cid, title)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("titling conversation %s failed", cid)
        finally:
            self._in_progress.discard(cid)

    def schedule(self, reply: Message, conv: Conversation) -> asyncio.Task | None:
        """Run `maybe_title` in the background (it never fails the reply); the task, or None when not needed."""
        if reply.status != "complete" or self.closed or not self._untitled(conv):
            return None
        task = asyncio.create_task(self.maybe_title(reply, conv), name=f"title-{reply.conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel titles still being generated."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
