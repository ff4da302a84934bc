"""One supervised loop for the background jobs (roll-up, retention): failures never end it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["repeat"]


async def repeat(
    step: Callable[[], Awaitable[float]],
    *,
    name: str,
    owner: Any,
    interval: float,
    retry_seconds: float,
    logger: logging.Logger,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Run `step` forever; it returns the delay to its next run.

    A failure is logged and counted on `owner` (`failures`, `last_error`) and retried after
    min(interval, retry_seconds): a locked or broken store must not stop the next attempt.
    """
    while True:
        try:
            delay = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            owner.failures += 1
            owner.last_error = f"{type(exc).__name__}: {exc}"
            delay = min(interval, retry_seconds)
            logger.exception("analytics %s failed (%d failures so far)", name, owner.failures)
        await sleep(delay)
