"""The `chatd` command: serve, user create, token."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence

from chatd.config import Settings, load_settings
from chatd.errors import AuthError, ChatdError, ConfigError
from chatd.models import User


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (also CHATD_CONFIG)")
    p.add_argument("--data-dir", dest="data_dir", help="where the database and secret live")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="chatd", description="Self-hosted real-time AI chat daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon")
    _common(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8888)")
    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create an account")
    _common(create)
    create.add_argument("name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    create.add_argument("--role", action="append", default=[], help="role to grant (admin, service)")
    token = sub.add_parser("token", help="print a token for an existing account")
    _common(token)
    token.add_argument("name")
    token.add_argument("--ttl", type=int, help="lifetime in seconds")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"data_dir": args.data_dir, "host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return load_settings(args.config, overrides=overrides)


async def _user_create(settings: Settings, name: str, password: str, roles: list[str]) -> User:
    from chatd.app import make_store
    from chatd.auth import PasswordHasher

    store = make_store(settings)
    await store.open()
    try:
        return await store.create_user(name, await PasswordHasher().hash(password), roles)
    finally:
        await store.close()


async def _token(settings: Settings, name: str, ttl: int | None) -> str:
    from chatd.app import make_store
    from chatd.auth import TokenService

    store = make_store(settings)
    await store.open()
    try:
        user = await store.get_user_by_name(name)
    finally:
        await store.close()
    if user is None:
        raise ConfigError(f"no user named {name!r}; create one with: chatd user create {name}")
    return TokenService(settings).issue(user.id, user.roles, ttl)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `chatd` command."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        logging.basicConfig(level=settings.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("aiosqlite").setLevel(logging.WARNING)  # it logs every statement at DEBUG
        if args.command == "serve":
            from chatd.app import serve_forever

            asyncio.run(serve_forever(settings))
        elif args.command == "user":
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"Password for {args.name}: ")
            if len(password) < 8:
                raise ConfigError("password must be at least 8 characters")
            user = asyncio.run(_user_create(settings, args.name, password, args.role))
            print(f"created user {user.username} (id {user.id})")
        elif args.command == "token":
            print(asyncio.run(_token(settings, args.name, args.ttl)))
    except (ConfigError, ChatdError, AuthError) as e:
        print(f"chatd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
