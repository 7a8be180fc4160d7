"""The chatd error hierarchy; each error carries its protocol code and HTTP status."""
from __future__ import annotations


class ChatdError(Exception):
    """Base of every error a client may see; `code` is the protocol error code."""

    code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str = "Internal error", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def to_data(self) -> dict:
        """The `data` object of an `error` frame for this error."""
        data: dict = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data


class InvalidJSON(ChatdError):
    """The frame is not a JSON object."""

    code = "INVALID_JSON"
    http_status = 400


class InvalidMessage(ChatdError):
    """A field is missing or has the wrong type; the message names the field."""

    code = "INVALID_MESSAGE"
    http_status = 400


class UnknownType(ChatdError):
    """The frame's `type` is not one chatd knows."""

    code = "UNKNOWN_TYPE"
    http_status = 400


class MessageTooLong(ChatdError):
    """The message content is longer than the configured limit."""

    code = "MESSAGE_TOO_LONG"
    http_status = 413


class NotFound(ChatdError):
    """The thing asked for does not exist (for a member: it was deleted)."""

    code = "NOT_FOUND"
    http_status = 404


class Forbidden(ChatdError):
    """The user may not do this (not a member, or lacks the role)."""

    code = "FORBIDDEN"
    http_status = 403


class Unauthorized(ChatdError):
    """No token, or a bad one (REST only; the WebSocket closes with 4001)."""

    code = "UNAUTHORIZED"
    http_status = 401


class RateLimited(ChatdError):
    """A rate limit or the concurrent-replies cap refused the request."""

    code = "RATE_LIMITED"
    http_status = 429


class Conflict(ChatdError):
    """The request conflicts with current state (e.g. a reply is already streaming)."""

    code = "CONFLICT"
    http_status = 409


class AssistantNotFound(ChatdError):
    """No assistant with that id is configured."""

    code = "ASSISTANT_NOT_FOUND"
    http_status = 404


class ProviderError(ChatdError):
    """The AI provider refused the request (bad key, bad request)."""

    code = "PROVIDER_ERROR"
    http_status = 502


class ProviderUnavailable(ChatdError):
    """The AI provider could not be reached or is overloaded."""

    code = "PROVIDER_UNAVAILABLE"
    http_status = 503


class BusUnavailable(ChatdError):
    """The event bus (Redis) could not carry an event in time; the protocol names no code of its own for it."""

    code = "PROVIDER_UNAVAILABLE"
    http_status = 503


class StoreUnavailable(ChatdError):
    """The database server could not be reached; nothing was written. The protocol names no code of its own."""

    code = "INTERNAL_ERROR"
    http_status = 503


class Filtered(ChatdError):
    """A message filter plugin refused the content."""

    code = "FILTERED"
    http_status = 422


class Cancelled(ChatdError):
    """A reply was stopped by `stop_generation` or shutdown (stream_error only)."""

    code = "CANCELLED"
    http_status = 409


class ConfigError(Exception):
    """A configuration value is invalid; the message is one clear line."""


class AuthError(Exception):
    """A token could not be accepted; the message is the 4001 close reason."""
