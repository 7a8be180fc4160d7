"""Settings: defaults, then a TOML file, then CHATD_* environment variables, then flags."""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from chatd.addresses import parse_networks
from chatd.errors import ConfigError

ENV_PREFIX = "CHATD_"
#: CHATD_* variables that are not settings: the config file's path, and the test suite's knobs.
ENV_NOT_SETTINGS = ("CHATD_CONFIG",)
ENV_TEST_PREFIX = "CHATD_TEST_"

#: Settings whose values are secrets: masked by `chatd check-config`.
SECRET_SETTINGS = frozenset({"jwt_secret"})


def default_data_dir() -> str:
    """`$XDG_DATA_HOME/chatd`, or `~/.local/share/chatd`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "chatd")


#: The store back-ends `store` may name.
STORES = ("sqlite", "postgres", "mongodb")


@dataclass
class Settings:
    """Every chatd setting, validated once at start-up."""

    host: str = "127.0.0.1"
    port: int = 8888
    data_dir: str = field(default_factory=default_data_dir)
    log_level: str = "INFO"

    # Store, bus, limiter back-ends.
    store: str = "sqlite"  # "sqlite" (embedded), "postgres" or "mongodb"
    sqlite_path: str = ""  # default: <data_dir>/chatd.sqlite3
    store_url: str = ""  # postgresql://user@host/db or mongodb://host/db (sqlite:///path also names a SQLite file)
    store_pool_size: int = 10  # connections to the database server per process
    bus: str = "local"
    limiter: str = "local"
    inflight: str = "local"  # where replies being generated are kept: "redis" shares them with every process
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "chatd:"  # channel and key prefix: several deployments may share one Redis
    owner_lease_s: float = 5.0  # with Redis: a process whose lease lapsed this long has its replies interrupted
    redis_pool_size: int = 64  # connections to Redis per process; a command waits for a free one
    redis_timeout_s: float = 5.0  # how long a Redis command may wait for a connection and retry before it fails

    # Authentication.
    jwt_secret: str = ""  # default: generated into <data_dir>/jwt_secret on first run
    jwt_secret_file: str = ""  # or read from this file (a systemd credential, a Docker secret)
    jwt_algorithm: str = "HS256"
    jwt_public_key: str = ""  # PEM, for RS256/ES256
    jwt_public_key_file: str = ""  # or the PEM file
    jwt_jwks_url: str = ""  # or the identity provider's JWKS document, for RS256/ES256
    jwt_issuer: str = ""
    jwt_audience: str = ""
    token_ttl_s: int = 86400
    registration_enabled: bool = True
    allowed_origins: list[str] = field(default_factory=list)  # empty: same host only
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For / X-Real-IP are believed.
    trusted_proxies: list[str] = field(default_factory=list)
    auth_timeout_s: float = 10.0
    metrics_require_token: bool = False

    # Limits (PROTOCOL.md §7).
    max_frame_bytes: int = 65536
    max_message_chars: int = 32000
    rate_messages: int = 20
    rate_window_s: float = 10.0
    max_concurrent_replies: int = 5
    max_frames_per_second: int = 50
    rate_auth_attempts: int = 30  # register + login attempts per client address per window
    rate_auth_window_s: float = 60.0
    outbound_queue_bytes: int = 1048576

    # Liveness and delivery.
    heartbeat_interval_s: float = 20.0
    heartbeat_timeout_s: float = 20.0
    checkpoint_interval_s: float = 1.0
    coalesce_ms: float = 15.0
    coalesce_max_chars: int = 512
    shutdown_grace_s: float = 10.0
    history_messages: int = 200

    # Providers and assistants: [providers.NAME] tables and [[assistants]].
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    assistants: list[dict[str, Any]] = field(default_factory=list)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)

    # The web page: another build to serve at / (default: the page packaged with chatd).
    static_dir: str = ""

    @property
    def db_path(self) -> str:
        """The SQLite file."""
        if self.store_url.startswith("sqlite:///") and not self.sqlite_path:
            return self.store_url.removeprefix("sqlite:///")
        return self.sqlite_path or os.path.join(self.data_dir, "chatd.sqlite3")

    def validate(self) -> Settings:
        """Check ranges and choices; raise ConfigError naming the bad setting."""
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"invalid setting {name}={getattr(self, name)!r}: {what}")

        need(0 <= self.port < 65536, "port", "must be a whole number 0–65535 (0 picks a free port)")
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as e:
            raise ConfigError(f"invalid setting trusted_proxies={self.trusted_proxies!r}: {e}") from None
        need(self.store in STORES, "store", "must be 'sqlite', 'postgres' or 'mongodb'")
        need(self.store == "sqlite" or bool(self.store_url), "store_url",
             f"is needed with store = {self.store!r} (e.g. postgresql://user@host/db or mongodb://host/db)")
        need(self.bus in ("local", "redis"), "bus", "must be 'local' or 'redis'")
        need(self.limiter in ("local", "redis"), "limiter", "must be 'local' or 'redis'")
        need(self.inflight in ("local", "redis"), "inflight", "must be 'local' or 'redis'")
        need(not (self.jwt_secret and self.jwt_secret_file), "jwt_secret_file",
             "set jwt_secret or jwt_secret_file, not both")
        need(not (self.jwt_public_key and self.jwt_public_key_file), "jwt_public_key_file",
             "set jwt_public_key or jwt_public_key_file, not both")
        need(self.jwt_algorithm in ("HS256", "HS384", "HS512", "RS256", "ES256"), "jwt_algorithm",
             "must be HS256, HS384, HS512, RS256 or ES256")
        if self.jwt_algorithm.startswith("HS") and self.jwt_secret:
            need(len(self.jwt_secret.encode()) >= 32, "jwt_secret", "must be at least 32 bytes")
        if not self.jwt_algorithm.startswith("HS"):
            need(bool(self.jwt_public_key or self.jwt_public_key_file or self.jwt_jwks_url), "jwt_public_key",
                 f"(or jwt_jwks_url) is required for {self.jwt_algorithm}")
        if self.jwt_jwks_url:
            need(self.jwt_jwks_url.startswith(("https://", "http://")), "jwt_jwks_url", "must be an http(s) URL")
            need(not self.jwt_algorithm.startswith("HS"), "jwt_jwks_url", "needs jwt_algorithm RS256 or ES256")
        for name in ("token_ttl_s", "auth_timeout_s", "max_frame_bytes", "max_message_chars",
                     "rate_messages", "rate_window_s", "max_concurrent_replies", "rate_auth_attempts",
                     "rate_auth_window_s", "max_frames_per_second", "outbound_queue_bytes", "checkpoint_interval_s",
                     "coalesce_max_chars", "history_messages", "owner_lease_s", "redis_pool_size",
                     "redis_timeout_s", "store_pool_size"):
            need(getattr(self, name) > 0, name, f"must be {_expected(name)}")
        for name in ("heartbeat_interval_s", "heartbeat_timeout_s", "coalesce_ms", "shutdown_grace_s"):
            need(getattr(self, name) >= 0, name, f"must be {_expected(name)}")
        need(self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level",
             "must be DEBUG, INFO, WARNING or ERROR")
        return self


_HINTS = get_type_hints(Settings)
_FIELDS = {f.name for f in dataclasses.fields(Settings)}
_NON_NEGATIVE = {"heartbeat_interval_s", "heartbeat_timeout_s", "coalesce_ms", "shutdown_grace_s"}
_CAN_BE_ZERO = {"port"} | _NON_NEGATIVE


def _expected(name: str) -> str:
    """What a setting's value must be, in plain words (for error messages)."""
    hint = _HINTS[name]
    if name == "port":
        return "a whole number 0–65535 (0 picks a free port)"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number of 0 or more" if name in _CAN_BE_ZERO else "a whole number greater than 0"
    if hint is float:
        return "a number of 0 or more" if name in _NON_NEGATIVE else "a number greater than 0"
    if hint is str:
        return "a text string"
    if hint == list[str]:
        return "a list of strings (in the environment: comma-separated)"
    if hint == list[dict[str, Any]]:
        return "an array of tables ([[...]] in TOML)"
    return "a table ([...] in TOML)"


def closest_setting(name: str) -> str | None:
    """The setting whose name is closest to `name` (for "did you mean"), if any is close."""
    match = difflib.get_close_matches(name.lower(), sorted(_FIELDS), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning per CHATD_* variable that names no setting, with the closest setting's variable."""
    out = []
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or key in ENV_NOT_SETTINGS or key.startswith(ENV_TEST_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower().split("__")[0]
        if name in _FIELDS:
            continue
        close = closest_setting(name)
        hint = f"; did you mean {ENV_PREFIX}{close.upper()} (setting {close})?" if close else ""
        out.append(f"environment variable {key} is not a chatd setting, ignored{hint}")
    return out


def _parse(name: str, value: Any) -> Any:
    """Convert a TOML, environment or flag value to the setting's type (ValueError when it has another)."""
    hint = _HINTS[name]
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if hint is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        return int(str(value).strip().replace("_", "")) if isinstance(value, str) else int(value)
    if hint is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return str(value)
    if hint == list[str]:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError
    if hint == list[dict[str, Any]]:
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
        raise ValueError
    if isinstance(value, dict):
        return value
    raise ValueError


def _coerce(name: str, value: Any, source: str = "") -> Any:
    """Convert a value to the setting's type; ConfigError saying what was expected, in plain words."""
    try:
        return _parse(name, value)
    except (ValueError, TypeError, OverflowError):
        where = f" (from {source})" if source else ""
        raise ConfigError(f"invalid setting {name}={value!r}{where}: must be {_expected(name)}") from None


def _set_nested(target: dict, path: list[str], value: str) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = _env_scalar(value)


def _env_scalar(text: str) -> Any:
    """Parse a nested env value as a TOML scalar when it is one, else keep the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_settings(config_file: str | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the validated settings from file, environment and flags (later wins)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG") or None
    if config_file:
        path = Path(config_file)
        try:
            with path.open("rb") as f:
                table = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        for key, value in table.items():
            if key not in _FIELDS:
                close = closest_setting(key)
                hint = f"; did you mean {close!r}?" if close else ""
                raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}")
            values[key] = _coerce(key, value, f"config file {path}")
    for env_key, text in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key == ENV_PREFIX + "CONFIG":
            continue
        parts = env_key[len(ENV_PREFIX):].lower().split("__")
        name = parts[0]
        if name not in _FIELDS:
            continue
        if len(parts) == 1:
            values[name] = _coerce(name, text, env_key)
        elif _HINTS[name] == dict[str, dict[str, Any]]:
            nested = values.setdefault(name, {})
            _set_nested(nested, parts[1:], text)
        else:
            raise ConfigError(f"environment variable {env_key}: {name} has no nested keys")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, "--" + key.replace("_", "-"))
    return Settings(**values).validate()
