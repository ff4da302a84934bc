"""Review: opening an existing store never needs the write lock (a held lock must not stop start-up)."""

from __future__ import annotations

import sqlite3

import pytest
from test_review_write_lock import T0, _count, _snapshot

from mockforge_analytics_plugin.store.sqlite import SQLiteStore


async def test_new_database_gets_incremental_auto_vacuum(tmp_path) -> None:
    store = await SQLiteStore.open(tmp_path / "n.db")
    await store.close()
    with sqlite3.connect(tmp_path / "n.db") as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


async def test_existing_database_opens_while_another_connection_holds_the_write_lock(tmp_path) -> None:
    path = tmp_path / "e.db"
    await (await SQLiteStore.open(path)).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        store = await SQLiteStore.open(path, busy_timeout_ms=50)  # raised 'database is locked' before
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await store.write_snapshot(_snapshot(T0, 2), T0 + 1)
            blocker.execute("COMMIT")
            await store.write_snapshot(_snapshot(T0, 2), T0 + 1)
            assert await _count(store, "middleware") == 2
        finally:
            await store.close()
    finally:
        blocker.close()
