"""Optional dependencies: which `chatd[extra]` brings a module a configured back-end needs."""
from __future__ import annotations

import importlib
from types import ModuleType

from chatd.errors import ConfigError

#: Top-level module -> the extra that installs it (setup.py's extras_require).
MODULE_EXTRAS = {
    "openai": "openai",
    "tiktoken": "openai",
    "anthropic": "anthropic",
    "redis": "redis",
    "asyncpg": "postgres",
    "pymongo": "mongodb",
}

#: Environment variables that make a provider plugin offer an assistant (so its absence is worth a warning).
PLUGIN_ENV = {"openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"), "anthropic": ("ANTHROPIC_API_KEY",)}


def install_hint(module: str | None) -> str | None:
    """`pip install 'chatd[x]'` for a missing module chatd knows, else None."""
    extra = MODULE_EXTRAS.get((module or "").split(".")[0])
    return f"pip install 'chatd[{extra}]'" if extra else None


def missing_message(module: str, needed_by: str) -> str:
    """One line: what needs the module and how to install it."""
    hint = install_hint(module)
    how = f": {hint}" if hint else ""
    return f"{needed_by} needs the Python package {module!r}, which is not installed{how}"


def require(module: str, needed_by: str) -> ModuleType:
    """Import `module`, or raise ConfigError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != module.split(".")[0]:
            raise
        raise ConfigError(missing_message(module.split(".")[0], needed_by)) from None
