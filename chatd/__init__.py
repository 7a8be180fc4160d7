"""chatd: a self-hosted, real-time AI chat daemon."""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator plugins use to implement chatd hooks.
hookimpl = pluggy.HookimplMarker("chatd")

__all__ = ["hookimpl", "__version__"]
