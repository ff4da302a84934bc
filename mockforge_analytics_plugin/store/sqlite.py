"""SQLiteStore: owns one writer and one reader connection; the SQL lives in sibling modules."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from ..snapshot import RecorderSnapshot
from . import migrations
from .series import invalidate_series_cache
from .writes import WriteResult, write_snapshot

__all__ = ["SQLiteStore", "StoreClosedError"]

MEMORY = ":memory:"


class StoreClosedError(RuntimeError):
    """The store was closed; nothing can be written."""


async def _connect(location: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    # isolation_level=None: autocommit; every transaction here is an explicit BEGIN ... COMMIT.
    db = await aiosqlite.connect(location, isolation_level=None, timeout=busy_timeout_ms / 1000)
    await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await db.execute("PRAGMA foreign_keys = ON")
    return db


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
            # auto_vacuum only takes effect before the first table exists (or after VACUUM).
            await writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if location != MEMORY:
                await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA synchronous = NORMAL")
            applied = await migrations.apply_migrations(writer, migrations_source)
            if location == MEMORY:
                reader = writer  # a second ":memory:" connection would be a different database
            else:
                reader = await _connect(location, busy_timeout_ms)
                await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            await writer.close()
            raise
        return cls(location, writer, reader, busy_timeout_ms, batch_size, applied)

    async def write_snapshot(self, snapshot: RecorderSnapshot, now: float) -> WriteResult:
        """Write one recorder snapshot in one transaction; raise on failure (nothing written)."""
        if self.closed:
            raise StoreClosedError("store is closed")
        return await write_snapshot(self.writer, snapshot, now, batch_size=self.batch_size)

    async def pending_migrations(self) -> list[str]:
        """Names of migrations not yet applied (read-only)."""
        return [m.name for m in await migrations.pending(self.reader)]

    async def close(self) -> None:
        """Close both connections (safe to call twice)."""
        if self.closed:
            return
        self.closed = True
        invalidate_series_cache(self.writer)
        if self.reader is not self.writer:
            with contextlib.suppress(sqlite3.Error):
                await self.reader.close()
        # Fold the WAL back into the main file so a copied .db is complete.
        with contextlib.suppress(sqlite3.Error):
            await self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            await self.writer.close()
