"""Migration 0004: client_analytics becomes a rowid table; rows, key and upserts survive it."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiosqlite
from support.rollup_data import Traffic, key, write

from mockforge_analytics_plugin.store.migrations import apply_migrations
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
T0 = 1795392000


async def test_client_rows_move_to_a_rowid_table_and_keep_upserting(tmp_path):
    before = tmp_path / "before"
    before.mkdir()
    for sql in sorted(MIGRATIONS.glob("000[123]_*.sql")):
        shutil.copy(sql, before / sql.name)
    path = tmp_path / "c.db"
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await apply_migrations(db, before)
        traffic = Traffic()
        for i in range(3):
            traffic.add(key(T0 + 60 * i, "/a"), 10.0 + i, client=f"10.0.0.{i % 2}")
        await write(db, traffic, T0)
        old = await db.execute_fetchall("SELECT * FROM client_analytics ORDER BY client_ip")
    finally:
        await db.close()
    assert len(old) == 2

    store = await SQLiteStore.open(path)  # applies 0004 and later
    try:
        db = store.writer
        assert await db.execute_fetchall("SELECT * FROM client_analytics ORDER BY client_ip") == old
        ddl = (await db.execute_fetchall("SELECT sql FROM sqlite_master WHERE name = 'client_analytics'"))[0][
            0
        ]
        assert "WITHOUT ROWID" not in ddl and "UNIQUE (timestamp, instance, client_ip" in ddl
        more = Traffic()
        more.add(key(T0 + 600, "/b"), 20.0, client="10.0.0.1")
        await write(db, more, T0 + 600)  # the flush's ON CONFLICT upsert still finds the key
        rows = await db.execute_fetchall(
            "SELECT client_ip, request_count FROM client_analytics ORDER BY client_ip"
        )
        assert rows == [("10.0.0.0", 2), ("10.0.0.1", 2)]
    finally:
        await store.close()
