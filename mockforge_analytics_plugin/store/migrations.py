"""Schema migrations in the sqlite-utils style: numbered SQL files, each applied with its record.

Discovery, checksums and statement splitting are plain functions with no database in them, so a
PostgreSQL runner can reuse them and only supply its own ``apply`` (asyncpg runs a whole file in
one ``async with conn.transaction()``).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import aiosqlite

__all__ = [
    "MIGRATION_SET",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "apply_migrations",
    "checksum",
    "discover_migrations",
    "pending",
    "split_sqlite_statements",
    "verify_checksums",
]

MIGRATION_SET = "mockforge_analytics"
_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_\-]+\.sql$")

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    migration_set TEXT NOT NULL,
    name          TEXT NOT NULL,
    checksum      TEXT NOT NULL,
    applied_at    INTEGER NOT NULL,
    PRIMARY KEY (migration_set, name)
)
"""

MigrationSource = Path | Traversable


class MigrationError(RuntimeError):
    """A migration cannot be applied, or an applied one was edited (the message names the file)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file: its name, text and checksum."""

    name: str  # e.g. "0001_initial.sql"
    sql: str
    checksum: str  # sha256 hex of the text with normalised line endings


def checksum(sql: str) -> str:
    """Return the sha256 of a migration's text; CRLF counts as LF so a checkout is no edit."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def _default_source() -> Traversable:
    return resources.files("mockforge_analytics_plugin.migrations")


def discover_migrations(source: MigrationSource | None = None) -> list[Migration]:
    """Return the ``NNNN_*.sql`` files of a folder (default: the packaged migrations), in order."""
    folder = _default_source() if source is None else source
    found: list[Migration] = []
    seen_numbers: dict[str, str] = {}
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match or not entry.is_file():
            continue
        number = match.group(1)
        if number in seen_numbers:
            # Two files with one number would apply in an order nobody chose.
            raise MigrationError(f"migrations {seen_numbers[number]} and {entry.name} share number {number}")
        seen_numbers[number] = entry.name
        sql = entry.read_text(encoding="utf-8")
        found.append(Migration(entry.name, sql, checksum(sql)))
    found.sort(key=lambda m: m.name)
    return found


def split_sqlite_statements(sql: str) -> list[str]:
    """Split a script into complete statements (semicolons inside strings and triggers are kept)."""
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    rest = buffer[:-1]  # drop the ';' the loop appended after the last piece
    if _has_code(rest):
        # An unterminated statement: keep it so SQLite reports the error against this file.
        statements.append(rest.strip())
    return statements


def _has_code(text: str) -> bool:
    """True when text holds more than whitespace, ';' and comments."""
    without_block = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    without_line = re.sub(r"--[^\n]*", "", without_block)
    return bool(without_line.replace(";", "").strip())


def verify_checksums(migrations: Iterable[Migration], applied: dict[str, str]) -> None:
    """Raise MigrationError naming every applied file whose text changed since it was applied."""
    edited = [m.name for m in migrations if m.name in applied and applied[m.name] != m.checksum]
    if edited:
        raise MigrationError(
            "applied migration edited (migrations are append-only; add a new file instead): "
            + ", ".join(edited)
        )


async def applied_migrations(db: aiosqlite.Connection, migration_set: str = MIGRATION_SET) -> dict[str, str]:
    """Return {name: checksum} of applied migrations; {} when the bookkeeping table is absent."""
    cursor = await db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    exists = await cursor.fetchone()
    await cursor.close()
    if not exists:
        return {}
    cursor = await db.execute(
        "SELECT name, checksum FROM schema_migrations WHERE migration_set = ?", (migration_set,)
    )
    rows = await cursor.fetchall()
    await cursor.close()
    return {name: digest for name, digest in rows}


async def pending(
    db: aiosqlite.Connection,
    source: MigrationSource | None = None,
    migration_set: str = MIGRATION_SET,
) -> list[Migration]:
    """Return the migrations not yet applied, without writing anything."""
    applied = await applied_migrations(db, migration_set)
    return [m for m in discover_migrations(source) if m.name not in applied]


async def apply_migrations(
    db: aiosqlite.Connection,
    source: MigrationSource | None = None,
    migration_set: str = MIGRATION_SET,
    now: float | None = None,
) -> list[str]:
    """Apply pending migrations in order, each file with its record in one transaction; return names.

    The connection must be in autocommit mode (``isolation_level=None``) so BEGIN/COMMIT here
    are the only transaction boundaries.
    """
    migrations = discover_migrations(source)
    applied = await applied_migrations(db, migration_set)
    verify_checksums(migrations, applied)
    todo = [m for m in migrations if m.name not in applied]
    if not todo:
        return []
    await db.execute(SCHEMA_MIGRATIONS_DDL)
    done: list[str] = []
    for migration in todo:
        await _apply_one(db, migration, migration_set, int(time.time() if now is None else now))
        done.append(migration.name)
    return done


async def _apply_one(db: aiosqlite.Connection, migration: Migration, migration_set: str, now: int) -> None:
    # executescript() commits first and runs outside any transaction, so run statement by
    # statement inside one explicit BEGIN IMMEDIATE (which also takes the write lock up front).
    await db.execute("BEGIN IMMEDIATE")
    try:
        # Re-check under the lock: another process may have applied it since we looked.
        cursor = await db.execute(
            "SELECT checksum FROM schema_migrations WHERE migration_set = ? AND name = ?",
            (migration_set, migration.name),
        )
        row = await cursor.fetchone()
        await cursor.close()
        if row is not None:
            await db.execute("ROLLBACK")
            if row[0] != migration.checksum:
                raise MigrationError(f"applied migration edited: {migration.name}")
            return
        for statement in split_sqlite_statements(migration.sql):
            await db.execute(statement)
        await db.execute(
            "INSERT INTO schema_migrations (migration_set, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
            (migration_set, migration.name, migration.checksum, now),
        )
        await db.execute("COMMIT")
    except MigrationError:
        raise
    except Exception as exc:
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
