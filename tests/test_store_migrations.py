"""Migration runner: fresh apply, idempotence, edited files fail loudly, broken files roll back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from mockforge_analytics_plugin.store import SQLiteStore
from mockforge_analytics_plugin.store.migrations import (
    MigrationError,
    apply_migrations,
    discover_migrations,
    pending,
    split_sqlite_statements,
)

PACKAGED_TABLES = {
    "series",
    "metrics_aggregates_minute",
    "metrics_aggregates_hour",
    "metrics_aggregates_day",
    "rollup_dirty",
    "analytics_state",
    "endpoint_stats",
    "error_events",
    "client_analytics",
    "traffic_patterns",
    "analytics_snapshots",
    "schema_migrations",
}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def _connect(path: Path) -> aiosqlite.Connection:
    return await aiosqlite.connect(path, isolation_level=None)


def _write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql, encoding="utf-8")


async def test_fresh_store_applies_packaged_schema(tmp_path: Path) -> None:
    db_path = tmp_path / "a.db"
    store = await SQLiteStore.open(db_path)
    try:
        assert store.applied == [m.name for m in discover_migrations()]
        assert await store.pending_migrations() == []
    finally:
        await store.close()
    assert _tables(db_path) >= PACKAGED_TABLES
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT migration_set, name, length(checksum) FROM schema_migrations").fetchall()
    assert sorted(rows) == [("mockforge_analytics", m.name, 64) for m in discover_migrations()]


async def test_reopen_does_not_reapply(tmp_path: Path) -> None:
    db_path = tmp_path / "a.db"
    store = await SQLiteStore.open(db_path)
    await store.close()
    with sqlite3.connect(db_path) as conn:
        before = conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall()
    store = await SQLiteStore.open(db_path)
    assert store.applied == []
    await store.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall() == before


async def test_apply_twice_is_noop_and_pending_is_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _write(folder, "0001_a.sql", "CREATE TABLE a (x INTEGER); -- trailing; comment\n")
    _write(
        folder, "0002_b.sql", "CREATE TABLE b (y TEXT DEFAULT 'semi;colon');\nINSERT INTO b VALUES ('1;2');"
    )
    _write(folder, "notes.txt", "not a migration")
    db = await _connect(tmp_path / "m.db")
    try:
        assert [m.name for m in await pending(db, folder)] == ["0001_a.sql", "0002_b.sql"]
        assert _tables(tmp_path / "m.db") == set()  # pending() created nothing
        assert await apply_migrations(db, folder, now=1000) == ["0001_a.sql", "0002_b.sql"]
        assert await apply_migrations(db, folder, now=2000) == []
        assert await pending(db, folder) == []
        rows = await db.execute_fetchall("SELECT name, applied_at FROM schema_migrations ORDER BY name")
        assert [tuple(r) for r in rows] == [("0001_a.sql", 1000), ("0002_b.sql", 1000)]
        assert [tuple(r) for r in await db.execute_fetchall("SELECT y FROM b")] == [("1;2",)]
        # A new file is picked up later, alone.
        _write(folder, "0003_c.sql", "CREATE TABLE c (z INTEGER);")
        assert await apply_migrations(db, folder) == ["0003_c.sql"]
    finally:
        await db.close()


async def test_edited_applied_migration_fails_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _write(folder, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    db = await _connect(tmp_path / "m.db")
    try:
        await apply_migrations(db, folder)
        _write(folder, "0001_a.sql", "CREATE TABLE a (x INTEGER, y INTEGER);")
        _write(folder, "0002_b.sql", "CREATE TABLE b (y INTEGER);")
        with pytest.raises(MigrationError, match=r"0001_a\.sql"):
            await apply_migrations(db, folder)
        # Nothing after the edited file ran either.
        assert _tables(tmp_path / "m.db") == {"a", "schema_migrations"}
    finally:
        await db.close()


async def test_broken_migration_rolls_back_completely(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _write(folder, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    _write(
        folder,
        "0002_broken.sql",
        "CREATE TABLE b (y INTEGER);\nINSERT INTO a VALUES (1);\nCREATE TABLE c (z INTEGER;\n",
    )
    db = await _connect(tmp_path / "m.db")
    try:
        with pytest.raises(MigrationError, match=r"0002_broken\.sql"):
            await apply_migrations(db, folder)
        assert not db.in_transaction
    finally:
        await db.close()
    path = tmp_path / "m.db"
    assert _tables(path) == {"a", "schema_migrations"}  # no b, no c
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM a").fetchone()[0] == 0
        assert conn.execute("SELECT name FROM schema_migrations").fetchall() == [("0001_a.sql",)]
    # Fixing the file lets it apply.
    _write(folder, "0002_broken.sql", "CREATE TABLE b (y INTEGER);")
    db = await _connect(path)
    try:
        assert await apply_migrations(db, folder) == ["0002_broken.sql"]
    finally:
        await db.close()


def test_duplicate_numbers_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    _write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="0001"):
        discover_migrations(tmp_path)


def test_split_keeps_semicolons_in_strings_and_triggers() -> None:
    sql = """
    -- leading comment; with semicolon
    CREATE TABLE t (x TEXT DEFAULT ';');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'a;b' WHERE rowid = new.rowid;
    END;
    /* block; comment */
    """
    statements = split_sqlite_statements(sql)
    assert len(statements) == 2
    assert statements[1].rstrip().endswith("END;")


async def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        await SQLiteStore.open(tmp_path / "nope" / "a.db")
    assert not (tmp_path / "nope").exists()
