"""Tokens (JWT with pinned algorithms and required claims) and password hashing (argon2)."""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import argon2
import jwt

from chatd.config import Settings
from chatd.errors import AuthError

log = logging.getLogger(__name__)

SECRET_FILE = "jwt_secret"
ADMIN_ROLES = frozenset({"admin", "service"})


@dataclass(frozen=True)
class Principal:
    """An authenticated user: id and roles from a verified token."""

    user_id: Any
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_privileged(self) -> bool:
        """May post assistant and system messages."""
        return bool(self.roles & ADMIN_ROLES)


def load_or_create_secret(data_dir: str) -> str:
    """The HS256 secret kept in the data dir, created (mode 0600) on first run."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        secret = secrets.token_urlsafe(48)
        f.write(secret)
    return secret


class TokenService:
    """Issues and verifies JWTs exactly as PROTOCOL.md §2 pins them."""

    #: After an unknown key id, the JWKS document is fetched again at most this often.
    JWKS_REFRESH_S = 30.0

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer or None
        self.audience = settings.jwt_audience or None
        self.ttl = settings.token_ttl_s
        self.jwks_url = settings.jwt_jwks_url or None
        self._jwks: dict[str, Any] = {}  # kid -> key, from the identity provider's JWKS
        self._jwks_fetched = 0.0
        self._jwks_lock = asyncio.Lock()
        if self.algorithm.startswith("HS"):
            self._sign_key: Any = settings.jwt_secret or load_or_create_secret(settings.data_dir)
            self._verify_key: Any = self._sign_key
        else:
            self._sign_key = None  # tokens come from an external identity provider
            self._verify_key = settings.jwt_public_key or None

    @property
    def can_issue(self) -> bool:
        """Whether this server signs tokens itself (HS*) rather than trusting an IdP."""
        return self._sign_key is not None

    def issue(self, user_id: Any, roles: list[str] | None = None, ttl: int | None = None) -> str:
        """A signed token for this user."""
        if not self.can_issue:
            raise AuthError("This server verifies tokens from an external identity provider")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": str(user_id), "iat": now, "exp": now + (ttl or self.ttl)}
        if roles:
            claims["roles"] = list(roles)
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return jwt.encode(claims, self._sign_key, algorithm=self.algorithm)

    async def refresh_jwks(self) -> None:
        """Fetch the identity provider's signing keys (without blocking the event loop)."""
        import tornado.httpclient

        if self.jwks_url is None:
            return
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(self.jwks_url, request_timeout=10)
        keys: dict[str, Any] = {}
        for jwk in jwt.PyJWKSet.from_json(resp.body.decode()).keys:
            if jwk.algorithm_name in (self.algorithm, None) and jwk.key_id:
                keys[jwk.key_id] = jwk.key
        self._jwks = keys
        self._jwks_fetched = time.monotonic()

    async def _key_for(self, token: str) -> Any:
        if self.jwks_url is None:
            return self._verify_key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise AuthError("Invalid token") from None
        if kid not in self._jwks and time.monotonic() - self._jwks_fetched >= self.JWKS_REFRESH_S:
            async with self._jwks_lock:  # a rotated key: fetch the document again, once
                if kid not in self._jwks and time.monotonic() - self._jwks_fetched >= self.JWKS_REFRESH_S:
                    try:
                        await self.refresh_jwks()
                    except Exception as e:
                        log.warning("fetching JWKS failed: %s", type(e).__name__)
                        self._jwks_fetched = time.monotonic()
        key = self._jwks.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise AuthError("Invalid token")
        return key

    async def verify(self, token: Any) -> Principal:
        """Check signature, algorithm and claims; raise AuthError with the close reason."""
        if not isinstance(token, str) or not token:
            raise AuthError("Authentication required")
        key = await self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("Token expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("Invalid token") from None
        sub = claims["sub"]
        user_id: Any = int(sub) if isinstance(sub, str) and sub.isdigit() else sub
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            roles = []
        return Principal(user_id=user_id, roles=frozenset(r for r in roles if isinstance(r, str)))


class PasswordHasher:
    """argon2id hashing, run in a thread because it is deliberately slow."""

    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher()
        # A hash to verify against for unknown users, so timing does not reveal them.
        self._dummy = self._hasher.hash(secrets.token_hex(8))

    async def hash(self, password: str) -> str:
        """The argon2id hash of a password."""
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether the password matches (constant work for an unknown user)."""
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
            except argon2.exceptions.VerificationError:
                return False
            except argon2.exceptions.InvalidHashError:
                return False
        return await asyncio.get_running_loop().run_in_executor(None, check)
