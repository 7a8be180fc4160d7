"""REST API v1 (PROTOCOL.md §8): accounts, assistants, conversations, messages."""
from __future__ import annotations

import re
from typing import Any

import msgspec

from chatd.errors import Forbidden, InvalidMessage, RateLimited, Unauthorized
from chatd.models import Conversation, Id, User
from chatd.web.base import ApiHandler

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


def parse_id(text: str) -> Id:
    """A path id: an integer when it looks like one, else the opaque string."""
    return int(text) if text.isascii() and text.isdigit() else text  # "²".isdigit() is true


class _AccountHandler(ApiHandler):
    public = True

    async def credentials(self) -> tuple[str, str]:
        """The username and password of the body, after the per-address attempt limit."""
        cfg = self.config
        retry = await self.settings["limiter"].hit(f"auth:{self.client_ip}", cfg.rate_auth_attempts,
                                                   cfg.rate_auth_window_s)
        if retry is not None:
            raise RateLimited("Too many sign-in attempts; try again later", retry_after=retry)
        body = self.json_body()
        username = self.field(body, "username", str, required=True)
        password = self.field(body, "password", str, required=True)
        return username, password

    def token_answer(self, user: User) -> dict:
        """The register/login answer: the user and a fresh token."""
        if not self.tokens.can_issue:
            raise Forbidden("Accounts come from the external identity provider on this server")
        return {
            "user": {"id": user.id, "username": user.username},
            "access_token": self.tokens.issue(user.id, user.roles),
            "token_type": "bearer",
            "expires_in": self.tokens.ttl,
        }


class RegisterHandler(_AccountHandler):
    """POST /api/v1/auth/register."""

    async def post(self) -> None:
        """Create an account and return a token (409 if the name is taken)."""
        if not self.config.registration_enabled or not self.tokens.can_issue:
            raise Forbidden("Registration is turned off on this server")
        username, password = await self.credentials()
        if not USERNAME.match(username):
            raise InvalidMessage("Field `username` must be 1-64 letters, digits or _.@-")
        if len(password) < MIN_PASSWORD:
            raise InvalidMessage(f"Field `password` must be at least {MIN_PASSWORD} characters")
        user = await self.store.create_user(username, await self.passwords.hash(password))
        self.send_json(self.token_answer(user), 201)


class LoginHandler(_AccountHandler):
    """POST /api/v1/auth/login."""

    async def post(self) -> None:
        """Check the password and return a token (401, the same for an unknown user)."""
        username, password = await self.credentials()
        user = await self.store.get_user_by_name(username)
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            raise Unauthorized("Wrong username or password")
        self.send_json(self.token_answer(user))


class MeHandler(ApiHandler):
    """GET /api/v1/me."""

    async def get(self) -> None:
        """The current user."""
        user = await self.store.get_user(self.principal.user_id)
        username = user.username if user else str(self.principal.user_id)
        roles = sorted(set(user.roles if user else []) | set(self.principal.roles))
        self.send_json({"id": self.principal.user_id, "username": username, "roles": roles})


class AssistantsHandler(ApiHandler):
    """GET /api/v1/assistants."""

    async def get(self) -> None:
        """The configured assistants."""
        self.send_json({"assistants": self.plugins.list_assistants()})


def public_conversation(conv: Conversation) -> dict[str, Any]:
    """The conversation object as the REST API shows it (its latest seq is the WebSocket's business)."""
    out: dict[str, Any] = msgspec.to_builtins(conv)
    out.pop("seq", None)
    return out


class ConversationsHandler(ApiHandler):
    """GET/POST /api/v1/conversations."""

    async def get(self) -> None:
        """The user's conversations, newest first, paged by `before`."""
        limit = self.int_arg("limit", 50, minimum=1, maximum=200)
        before = self.get_query_argument("before", None) or None
        before_id = self.get_query_argument("before_id", None) or None  # tie-breaker for equal updated_at
        convs = await self.store.list_conversations(self.principal.user_id, limit, before,
                                                    parse_id(before_id) if before_id else None)
        self.send_json({"conversations": [public_conversation(c) for c in convs]})

    async def post(self) -> None:
        """Create a conversation."""
        body = self.json_body()
        title = self.field(body, "title", str)
        assistant_id = self.field(body, "assistant_id", str)
        member_ids = self.field(body, "member_ids", list) or []
        if title is not None and len(title) > 200:
            raise InvalidMessage("Field `title` must be at most 200 characters")
        conv = await self.chat.create_conversation(self.principal, title, assistant_id, member_ids)
        self.send_json({"conversation": public_conversation(conv)}, 201)


class ConversationHandler(ApiHandler):
    """GET/PATCH/DELETE /api/v1/conversations/{id}."""

    async def get(self, cid: str) -> None:
        """Read one conversation."""
        conv = await self.chat.conversation_for_member(self.principal, parse_id(cid))
        self.send_json({"conversation": public_conversation(conv)})

    async def patch(self, cid: str) -> None:
        """Rename, change assistant, add members."""
        body = self.json_body()
        title = self.field(body, "title", str)
        assistant_id = self.field(body, "assistant_id", str)
        member_ids = self.field(body, "member_ids", list)
        if title is not None and not 0 < len(title) <= 200:
            raise InvalidMessage("Field `title` must be 1-200 characters")
        if title is None and assistant_id is None and not member_ids:
            raise InvalidMessage("Nothing to change: give `title`, `assistant_id` or `member_ids`")
        conv = await self.chat.update_conversation(self.principal, parse_id(cid), title, assistant_id, member_ids)
        self.send_json({"conversation": public_conversation(conv)})

    async def delete(self, cid: str) -> None:
        """Delete the conversation."""
        conv = await self.chat.delete_conversation(self.principal, parse_id(cid))
        self.send_json({"conversation": public_conversation(conv)})


class MessagesHandler(ApiHandler):
    """GET /api/v1/conversations/{id}/messages."""

    async def get(self, cid: str) -> None:
        """The newest `limit` messages of the window, oldest first."""
        conv = await self.chat.conversation_for_member(self.principal, parse_id(cid))
        limit = self.int_arg("limit", 50, minimum=1, maximum=500)
        before_seq = self.int_arg("before_seq")
        after_seq = self.int_arg("after_seq")
        messages = await self.store.list_messages(conv.id, limit, before_seq, after_seq)
        self.send_json({"messages": messages})


def routes() -> list:
    """The REST routes."""
    return [
        (r"/api/v1/auth/register", RegisterHandler),
        (r"/api/v1/auth/login", LoginHandler),
        (r"/api/v1/me", MeHandler),
        (r"/api/v1/assistants", AssistantsHandler),
        (r"/api/v1/conversations", ConversationsHandler),
        (r"/api/v1/conversations/([^/]+)", ConversationHandler),
        (r"/api/v1/conversations/([^/]+)/messages", MessagesHandler),
    ]
