"""A connection of its own to the store's existing file, for background writers (maintenance,
Prometheus ingest) that must not interleave transactions with the flusher on the shared writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

__all__ = ["open_existing"]


async def open_existing(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open ``path`` read-write without ever creating it, with the store's connection pragmas.

    A missing file is refused before aiosqlite starts its worker thread: when aiosqlite's own
    connect fails, it stops that thread without waiting, and the thread later reports to the event
    loop, which may be closed by then (RuntimeError in the thread; omnilib/aiosqlite#241).
    ``mode=rw`` still refuses a file removed between the check and the open.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise sqlite3.OperationalError(f"unable to open database file: {file} does not exist")
    db = await aiosqlite.connect(
        file.as_uri() + "?mode=rw", uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000
    )
    try:
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await db.close()  # no half-set-up connection (and its thread) left behind
        raise
    return db
