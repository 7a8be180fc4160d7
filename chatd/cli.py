"""The `chatd` command: serve, check-config, backup, user create, token.

Exit codes: 0 done; 1 a failure outside the configuration (port taken, directory not writable,
Redis or the store unreachable, a refused operation); 2 bad command-line usage; 78 (sysexits'
EX_CONFIG) a configuration error. An expected failure is one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from chatd import __version__, extras
from chatd.config import SECRET_SETTINGS, Settings, load_settings, unknown_env_warnings
from chatd.errors import AuthError, ChatdError, ConfigError, NotFound
from chatd.models import User
from chatd.startup import EX_CONFIG, EX_FAILURE, StartupError, preflight, redact_url, resolve_files

EX_USAGE = 2
MIN_PASSWORD = 8
SECRET_KEY_WORDS = ("key", "secret", "token", "password")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (also CHATD_CONFIG)")
    p.add_argument("--data-dir", dest="data_dir", help="where the database and secret live")


def version() -> str:
    """The installed chatd's version."""
    try:
        from importlib.metadata import version as dist_version

        return dist_version("chatd")
    except Exception:  # not installed (run from a checkout with PYTHONPATH)
        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="chatd", description="Self-hosted real-time AI chat daemon")
    parser.add_argument("--version", action="version", version=f"chatd {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon")
    _common(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port (default 8888; 0 picks a free one)")  # checked by the settings
    serve.add_argument("--static-dir", dest="static_dir", help="serve this page build instead of the packaged one")
    check = sub.add_parser("check-config", help="validate the configuration and print the effective settings")
    _common(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    backup = sub.add_parser("backup", help="copy the SQLite store to PATH (safe while the server runs)")
    _common(backup)
    backup.add_argument("path", help="the file to write")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    store = sub.add_parser("store", help="move data between stores")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    copy = store_sub.add_parser("copy", help="copy every user, conversation and message into an empty store, "
                                             "then verify counts and checksums")
    _common(copy)
    copy.add_argument("from_url", metavar="FROM_URL", help="sqlite:///PATH, postgresql://… or mongodb://…")
    copy.add_argument("to_url", metavar="TO_URL", help="an empty store (created and migrated if new)")
    fetch = sub.add_parser("fetch-tokenizers",
                           help="download the tiktoken encodings of the configured OpenAI models (once per machine)")
    _common(fetch)
    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create an account")
    _common(create)
    create.add_argument("name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    create.add_argument("--role", action="append", default=[], help="role to grant (admin, service)")
    token = sub.add_parser("token", help="print a token for an existing account")
    _common(token)
    token.add_argument("name")
    token.add_argument("--ttl", type=int, help="lifetime in seconds")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in ("data_dir", "host", "port", "static_dir")}
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
        raise NotFound(f"no user named {name!r}; create one with: chatd user create {name}")
    return TokenService(settings).issue(user.id, user.roles, ttl)


class UsageError(Exception):
    """A command-line mistake (exit 2)."""


def read_password(args: argparse.Namespace) -> str:
    """The new account's password: one line of stdin, or asked twice on the terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if len(password) >= MIN_PASSWORD and getpass.getpass("Repeat the password: ") != password:
            raise UsageError("the passwords do not match; nothing was created")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"password must be at least {MIN_PASSWORD} characters")
    return password


def _mask(name: str, value: Any) -> Any:
    """A setting's value for display: secrets replaced by `***` (set) or left empty (unset)."""
    if isinstance(value, dict):
        return {k: _mask(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(name, v) for v in value]
    secret = name in SECRET_SETTINGS or any(word in name.lower() for word in SECRET_KEY_WORDS)
    if secret and isinstance(value, str) and value and not name.endswith(("_env", "_file")):
        return "***"
    if isinstance(value, str) and "://" in value:
        return redact_url(value)  # store_url, redis_url: no password
    return value


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting with its effective value, secrets masked."""
    from chatd.web.static import page_dir

    out = {f.name: _mask(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)}
    if not settings.sqlite_path:
        out["sqlite_path"] = settings.db_path
    if not settings.jwt_secret and settings.jwt_algorithm.startswith("HS"):
        out["jwt_secret_file"] = os.path.join(settings.data_dir, "jwt_secret")  # generated there
    out["static_dir"] = page_dir(settings.static_dir) or ""
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def to_toml(values: dict[str, Any]) -> str:
    """The settings as TOML a config file could hold."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict) and k != "assistants"]
    for table in ("providers", "plugins"):
        for name, body in values[table].items():
            lines.append(f"\n[{table}.{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    for spec in values["assistants"]:
        lines.append("\n[[assistants]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"


def check_config(settings: Settings, as_json: bool) -> None:
    """Validate everything that can be without serving (files, directories, plugins, extras) and print."""
    from chatd.app import make_store
    from chatd.plugins import PluginRegistry

    preflight(settings)
    plugins = PluginRegistry()
    plugins.configure(settings.providers, settings.assistants, plugin_settings=settings.plugins,
                      max_message_chars=settings.max_message_chars)
    make_store(settings)  # a missing driver (extra) is a ConfigError naming the pip install
    users = [name for name in ("bus", "limiter", "inflight") if getattr(settings, name) == "redis"]
    if users:
        extras.require("redis.asyncio", " and ".join(f'{name} = "redis"' for name in users))
    values = effective_settings(settings)
    print(json.dumps(values, indent=2) if as_json else to_toml(values), end="\n" if as_json else "")
    names = ", ".join(f"{a.id} ({plugins.provider_type_of[a.provider]})" for a in plugins.assistants.values())
    print(f"chatd: configuration OK; assistants: {names}", file=sys.stderr)


def backup(settings: Settings, path: str, force: bool) -> None:
    """`chatd backup PATH`."""
    from chatd.backup import backup_sqlite

    if settings.store != "sqlite":
        raise ConfigError(f"chatd backup copies the SQLite store; store = {settings.store!r} has its own tools")
    result = backup_sqlite(settings.db_path, path, overwrite=force)
    print(f"backed up {settings.db_path} to {result.path}: {result.size} bytes, {result.messages} messages")


def fetch_tokenizers(settings: Settings) -> None:
    """`chatd fetch-tokenizers`: download the encodings the configured assistants' models use."""
    from chatd import context
    from chatd.plugins import PluginRegistry

    extras.require("tiktoken", "counting OpenAI models' tokens")
    plugins = PluginRegistry()
    plugins.configure(settings.providers, settings.assistants, plugin_settings=settings.plugins)
    names = sorted({n for a in plugins.assistants.values() if (n := context.encoding_name(a.model))})
    for name in names:
        if context.is_cached(name):
            print(f"{name}: already in {context.cache_dir()}")
            continue
        try:
            context.fetch_tokenizer(name)
        except Exception as e:
            raise StartupError(f"could not download tokenizer {name}: {e}") from None
        print(f"{name}: downloaded into {context.cache_dir()}")
    if not names:
        print("no configured assistant uses a model tiktoken knows: nothing to fetch")


def use_tiktoken_cache(settings: Settings) -> None:
    """Keep tiktoken's cache in the data dir (kept across restarts, unlike /tmp under PrivateTmp)."""
    if not (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")):
        os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(settings.data_dir, "tiktoken")


def _run(args: argparse.Namespace) -> None:
    for warning in unknown_env_warnings(os.environ):
        print(f"chatd: warning: {warning}", file=sys.stderr)
    settings = _settings(args)
    if args.command in ("serve", "fetch-tokenizers"):
        use_tiktoken_cache(settings)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)  # it logs every statement at DEBUG
    if args.command == "serve":
        from chatd.app import serve_forever

        asyncio.run(serve_forever(preflight(settings)))
    elif args.command == "check-config":
        check_config(settings, args.json)
    elif args.command == "fetch-tokenizers":
        fetch_tokenizers(settings)
    elif args.command == "backup":
        backup(settings, args.path, args.force)
    elif args.command == "store":
        from chatd.store.copy import copy_between

        asyncio.run(copy_between(args.from_url, args.to_url, print))
    elif args.command == "user":
        password = read_password(args)
        user = asyncio.run(_user_create(resolve_files(settings), args.name, password, args.role))
        print(f"created user {user.username} (id {user.id})")
    elif args.command == "token":
        print(asyncio.run(_token(resolve_files(settings), args.name, args.ttl)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `chatd` command."""
    args = build_parser().parse_args(argv)
    code = 0
    try:
        _run(args)
    except ConfigError as e:
        code = _fail(e, EX_CONFIG)
    except UsageError as e:
        code = _fail(e, EX_USAGE)
    except (StartupError, ChatdError, AuthError) as e:
        code = _fail(e, EX_FAILURE)
    except ModuleNotFoundError as e:
        hint = extras.install_hint(e.name)
        if hint is None:
            raise
        code = _fail(f"the Python package {e.name!r} is not installed: {hint}", EX_CONFIG)
    except KeyboardInterrupt:
        return 130
    if code and args.command == "serve":
        _exit_now_if_stuck(code)
    return code


def _fail(e: object, code: int) -> int:
    print(f"chatd: error: {e}", file=sys.stderr)
    return code


def _exit_now_if_stuck(code: int) -> None:
    """A failed start-up must exit even if a worker thread (a store driver's) was left running."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
