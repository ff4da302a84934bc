"""Storage: migrations, the SQLite store (write side) and its SQL modules."""

from __future__ import annotations

from .migrations import Migration, MigrationError, apply_migrations, discover_migrations, pending
from .series import SeriesDims, invalidate_series_cache, resolve_series_ids, series_dims
from .sqlite import SQLiteStore, StoreClosedError, StoreUnavailableError, writing
from .writes import WriteResult, write_snapshot

__all__ = [
    "Migration",
    "MigrationError",
    "SQLiteStore",
    "SeriesDims",
    "StoreClosedError",
    "StoreUnavailableError",
    "WriteResult",
    "apply_migrations",
    "discover_migrations",
    "invalidate_series_cache",
    "pending",
    "resolve_series_ids",
    "series_dims",
    "write_snapshot",
    "writing",
]
