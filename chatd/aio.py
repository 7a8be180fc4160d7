"""Small asyncio helpers shared by the services."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel a background task and wait until it has ended, whatever it raised."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


async def finished_within(awaitable: Awaitable[object], seconds: float) -> bool:
    """Await something for at most `seconds`; whether it finished in time (it is cancelled if not)."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        return False
    return True
