"""REST API v1 (PROTOCOL.md §8): accounts, assistants, conversations, messages."""
from __future__ import annotations

import msgspec

from chatd.errors import Forbidden, InvalidMessage, RateLimited, Unauthorized
from chatd.models import Id, User
from chatd.web import schemas
from chatd.web.base import ApiHandler
from chatd.web.openapi import OpenApiHandler


def parse_id(text: str) -> Id:
    """A path id: an integer when it looks like one, else the opaque string."""
    return int(text) if text.isascii() and text.isdigit() else text  # "²".isdigit() is true


class _AccountHandler(ApiHandler):
    public = True

    async def check_attempts(self) -> None:
        """The per-address sign-in attempt limit (before the body is looked at)."""
        cfg = self.config
        retry = await self.settings["limiter"].hit(f"auth:{self.client_ip}", cfg.rate_auth_attempts,
                                                   cfg.rate_auth_window_s)
        if retry is not None:
            raise RateLimited("Too many sign-in attempts; try again later", retry_after=retry)

    def token_answer(self, user: User) -> schemas.TokenAnswer:
        """The register/login answer: the user and a fresh token."""
        if not self.tokens.can_issue:
            raise Forbidden("Accounts come from the external identity provider on this server")
        return schemas.TokenAnswer(user=schemas.UserRef(id=user.id, username=user.username),
                                   access_token=self.tokens.issue(user.id, user.roles), token_type="bearer",
                                   expires_in=self.tokens.ttl)


class RegisterHandler(_AccountHandler):
    """POST /api/v1/auth/register."""

    async def post(self) -> None:
        """Create an account and return a token (409 if the name is taken)."""
        if not self.config.registration_enabled or not self.tokens.can_issue:
            raise Forbidden("Registration is turned off on this server")
        await self.check_attempts()
        body = self.body(schemas.Registration)
        if not schemas.USERNAME.fullmatch(body.username):
            raise InvalidMessage("Field `username` must be 1-64 letters, digits or _.@-")
        user = await self.store.create_user(body.username, await self.passwords.hash(body.password))
        self.send_json(self.token_answer(user), 201)


class LoginHandler(_AccountHandler):
    """POST /api/v1/auth/login."""

    async def post(self) -> None:
        """Check the password and return a token (401, the same for an unknown user)."""
        await self.check_attempts()
        body = self.body(schemas.Credentials)
        user = await self.store.get_user_by_name(body.username)
        ok = await self.passwords.verify(user.password_hash if user else None, body.password)
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
        self.send_json(schemas.Me(id=self.principal.user_id, username=username, roles=roles))


class AssistantsHandler(ApiHandler):
    """GET /api/v1/assistants."""

    async def get(self) -> None:
        """The available assistants; `?refresh=1` first asks the providers which models they serve."""
        if self.query(schemas.AssistantsQuery).refresh not in (None, "0", "false"):
            await self.plugins.discover()
        self.send_json({"assistants": self.plugins.list_assistants()})


class ConversationsHandler(ApiHandler):
    """GET/POST /api/v1/conversations."""

    async def get(self) -> None:
        """The user's conversations, newest first, paged by `before` (and `before_id`, the tie-breaker)."""
        q = self.query(schemas.ConversationsQuery)
        convs = await self.store.list_conversations(self.principal.user_id, min(q.limit, 200), q.before,
                                                    parse_id(q.before_id) if q.before_id else None)
        self.send_json(schemas.ConversationList(conversations=[schemas.PublicConversation.of(c) for c in convs]))

    async def post(self) -> None:
        """Create a conversation."""
        body = self.body(schemas.NewConversation)
        conv = await self.chat.create_conversation(self.principal, body.title, body.assistant_id,
                                                   list(body.member_ids or []))
        self.send_json(schemas.ConversationAnswer(conversation=schemas.PublicConversation.of(conv)), 201)


class ConversationHandler(ApiHandler):
    """GET/PATCH/DELETE /api/v1/conversations/{id}."""

    async def get(self, cid: str) -> None:
        """Read one conversation."""
        conv = await self.chat.conversation_for_member(self.principal, parse_id(cid))
        self.send_json(schemas.ConversationAnswer(conversation=schemas.PublicConversation.of(conv)))

    async def patch(self, cid: str) -> None:
        """Rename, change assistant, add members."""
        body = self.body(schemas.ConversationChange)
        if body.title is None and body.assistant_id is None and not body.member_ids:
            raise InvalidMessage("Nothing to change: give `title`, `assistant_id` or `member_ids`")
        conv = await self.chat.update_conversation(self.principal, parse_id(cid), body.title, body.assistant_id,
                                                   list(body.member_ids) if body.member_ids else None)
        self.send_json(schemas.ConversationAnswer(conversation=schemas.PublicConversation.of(conv)))

    async def delete(self, cid: str) -> None:
        """Delete the conversation."""
        conv = await self.chat.delete_conversation(self.principal, parse_id(cid))
        self.send_json(schemas.ConversationAnswer(conversation=schemas.PublicConversation.of(conv)))


class MessagesHandler(ApiHandler):
    """GET /api/v1/conversations/{id}/messages."""

    async def get(self, cid: str) -> None:
        """The newest `limit` messages of the window, oldest first."""
        q = self.query(schemas.MessagesQuery)
        conv = await self.chat.conversation_for_member(self.principal, parse_id(cid))
        messages = await self.store.list_messages(conv.id, min(q.limit, 500), _given(q.before_seq),
                                                  _given(q.after_seq))
        self.send_json(schemas.MessageList(messages=messages))


def _given(value: int | msgspec.UnsetType) -> int | None:
    """An optional query integer: None when absent."""
    return None if isinstance(value, msgspec.UnsetType) else value


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
        (r"/api/v1/openapi\.json", OpenApiHandler),
    ]
