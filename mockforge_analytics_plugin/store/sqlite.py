"""SQLiteStore: owns one writer and one reader connection; the SQL lives in sibling modules."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from ..snapshot import RecorderSnapshot
from . import compaction, migrations
from .series import invalidate_series_cache
from .writes import WriteResult, write_snapshot

__all__ = [
    "WRITER_PRAGMAS",
    "SQLiteStore",
    "StoreClosedError",
    "StoreUnavailableError",
    "connection_pragmas",
    "writing",
]

MEMORY = ":memory:"


class StoreUnavailableError(RuntimeError):
    """The database cannot take writes (its file was removed or replaced, or the store is closed)."""


class StoreClosedError(StoreUnavailableError):
    """The store was closed; nothing can be written."""


def _file_identity(location: str) -> tuple[int, int] | None:
    """(device, inode) of the database file, or None when it does not exist."""
    try:
        st = os.stat(location)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# The writer's settings. A flush rewrites the pages of every open minute row each second, so:
# - cache_size 16 MiB (default 2 MiB): the pages of 10k rows stay in the writer's cache between
#   flushes instead of being read back from the file, and a transaction no longer spills dirty
#   pages to the WAL before its commit. Memory only (up to 16 MiB, used as pages are touched).
# - wal_autocheckpoint 4000 pages (default 1000): a checkpoint copies each page once however often
#   it was rewritten since the last one, so rarer checkpoints copy fewer pages (a 10k-row flush
#   writes ~2,300 pages: one checkpoint every other flush instead of one every flush). The WAL
#   file grows to ~16 MiB (plus the last transaction) before it is reused. Durability is
#   unchanged: a commit is in the WAL either way; with synchronous=NORMAL a power loss may lose
#   the newest commits the OS had not written back yet, with either interval; an application
#   crash loses nothing committed.
# Measured, 60 flushes of 10k rows through plain sqlite3 (/proc/self/io, strace): written 690 ->
# 470 MiB, read 348 -> 52 MiB, fdatasync 129 -> 48 (docs/flush.md).
WRITER_PRAGMAS = (
    "PRAGMA synchronous = NORMAL",
    "PRAGMA cache_size = -16384",
    "PRAGMA wal_autocheckpoint = 4000",
)


def connection_pragmas(busy_timeout_ms: int) -> list[str]:
    """The pragmas every connection of the store sets (also the flush bench's plain-sqlite3 floor)."""
    return [f"PRAGMA busy_timeout = {int(busy_timeout_ms)}", "PRAGMA foreign_keys = ON"]


async def _connect(location: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    # isolation_level=None: autocommit; every transaction here is an explicit BEGIN ... COMMIT.
    db = await aiosqlite.connect(location, isolation_level=None, timeout=busy_timeout_ms / 1000)
    for pragma in connection_pragmas(busy_timeout_ms):
        await db.execute(pragma)
    return db


def writing(store: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    """The store's ``write_lock`` as a context manager (a no-op for a store without one).

    Hold it around a whole write transaction (BEGIN ... COMMIT, and any series-cache
    invalidation that goes with it); take it before BEGIN, never while SQLite's lock is held.
    """
    lock = getattr(store, "write_lock", None)
    return lock if lock is not None else contextlib.nullcontext()


@dataclass
class SQLiteStore:
    """The SQLite store: WAL, one writer connection, one reader connection, migrations on open."""

    path: str
    writer: aiosqlite.Connection
    reader: aiosqlite.Connection
    busy_timeout_ms: int = 5000
    batch_size: int = 1000
    applied: list[str] = field(default_factory=list)  # migrations applied by this open()
    closed: bool = False
    # The file we opened. An open connection keeps writing into an unlinked file (WAL mode has
    # no SQLITE_READONLY_DBMOVED check), so each write verifies the path still names this file.
    file_identity: tuple[int, int] | None = None
    # Serialises every transaction written through `writer` (and, for a file, the maintenance
    # writers too): two coroutines must never interleave BEGIN ... COMMIT on one connection, and
    # a writer that deletes series must invalidate the writer's id cache before the next flush.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        batch_size: int = 1000,
        migrations_source: migrations.MigrationSource | None = None,
    ) -> SQLiteStore:
        """Open (or create) the database file, set pragmas, apply migrations, open the reader."""
        location = str(path)
        if location != MEMORY:
            folder = Path(location).expanduser().resolve().parent
            if not folder.is_dir():
                # sqlite would say "unable to open database file"; name the folder instead.
                raise FileNotFoundError(f"analytics database folder does not exist: {folder}")
        writer = await _connect(location, busy_timeout_ms)
        try:
            # auto_vacuum only takes effect before the first table exists (or after VACUUM). Setting
            # it takes the write lock even when it is already set, so an existing database held by
            # another writer (a long roll-up, a sqlite3 shell) would stop the host from starting.
            async with writer.execute("PRAGMA auto_vacuum") as cursor:
                mode = await cursor.fetchone()
            if mode is None or int(mode[0]) != 2:  # 2 = INCREMENTAL
                await writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if location != MEMORY:
                await writer.execute("PRAGMA journal_mode = WAL")
            for pragma in WRITER_PRAGMAS:
                await writer.execute(pragma)
            applied = await migrations.apply_migrations(writer, migrations_source)
            if location == MEMORY:
                reader = writer  # a second ":memory:" connection would be a different database
            else:
                reader = await _connect(location, busy_timeout_ms)
                await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            raise
        compaction.warm_up()
        identity = None if location == MEMORY else _file_identity(location)
        return cls(location, writer, reader, busy_timeout_ms, batch_size, applied, file_identity=identity)

    async def write_snapshot(self, snapshot: RecorderSnapshot, now: float) -> WriteResult:
        """Write one recorder snapshot in one transaction; raise on failure (nothing written)."""
        async with self.write_lock:
            if self.closed:
                raise StoreClosedError("store is closed")
            self.check_file()
            # Checked again just before COMMIT: a removal during the write must not commit into
            # an orphaned file and count as written.
            return await write_snapshot(
                self.writer, snapshot, now, batch_size=self.batch_size, before_commit=self.check_file
            )

    def check_file(self) -> None:
        """Raise StoreUnavailableError if the database file was removed or replaced since open."""
        if self.file_identity is None:
            return
        current = _file_identity(self.path)
        if current != self.file_identity:
            what = "removed" if current is None else "replaced"
            raise StoreUnavailableError(f"analytics database file was {what}: {self.path}")

    async def pending_migrations(self) -> list[str]:
        """Names of migrations not yet applied (read-only)."""
        return [m.name for m in await migrations.pending(self.reader)]

    async def close(self) -> None:
        """Close both connections once the write in progress (if any) is done (safe to call twice)."""
        if self.closed:
            return
        self.closed = True
        # A writer holding the lock finishes (bounded by busy_timeout) before its connection goes;
        # writers queued behind it see `closed` and raise StoreClosedError.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.write_lock.acquire(), timeout=2 * self.busy_timeout_ms / 1000 + 1)
            self.write_lock.release()
        invalidate_series_cache(self.writer)
        if self.reader is not self.writer:
            with contextlib.suppress(sqlite3.Error):
                await self.reader.close()
        # Fold the WAL back into the main file so a copied .db is complete.
        with contextlib.suppress(sqlite3.Error):
            await self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            await self.writer.close()
