"""Series dimensions -> series_id: get-or-create in batches, with a bounded per-connection cache."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterable

import aiosqlite

from ..snapshot import SeriesKey

__all__ = [
    "DIM_COLUMNS",
    "SeriesCache",
    "SeriesDims",
    "invalidate_series_cache",
    "resolve_series_ids",
    "series_cache",
    "series_dims",
]

# (source, instance, protocol, method, endpoint, status_code, workspace_id, environment, test_run)
SeriesDims = tuple[str, str, str, str, str, int, str, str, str]
DIM_COLUMNS = (
    "source",
    "instance",
    "protocol",
    "method",
    "endpoint",
    "status_code",
    "workspace_id",
    "environment",
    "test_run",
)
_COLS = ", ".join(DIM_COLUMNS)
_INSERT = (
    f"INSERT INTO series ({_COLS}, created_at) VALUES ({', '.join('?' * (len(DIM_COLUMNS) + 1))}) "
    "ON CONFLICT DO NOTHING"
)
_ROW = "(" + ", ".join("?" * len(DIM_COLUMNS)) + ")"
_WANTED = ", ".join(f"w{i}" for i in range(len(DIM_COLUMNS)))
_SELECT_JOIN = (
    f"SELECT s.series_id, {', '.join('s.' + c for c in DIM_COLUMNS)} FROM w CROSS JOIN series AS s ON "
    + " AND ".join(f"s.{c} = w.w{i}" for i, c in enumerate(DIM_COLUMNS))
)
# Rows per SELECT: 9 bound values each stays far below SQLITE_MAX_VARIABLE_NUMBER (32766).
_SELECT_CHUNK = 500
DEFAULT_CACHE_SIZE = 50_000


def series_dims(key: SeriesKey) -> SeriesDims:
    """Return the dimensions of a series key in DIM_COLUMNS order (the minute left out)."""
    return (
        key.source,
        key.instance,
        key.protocol,
        key.method,
        key.endpoint,
        key.status_code,
        key.workspace_id,
        key.environment,
        key.test_run,
    )


class SeriesCache:
    """A bounded LRU map of dims -> series_id for one database."""

    def __init__(self, max_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.max_size = max_size
        self._ids: OrderedDict[SeriesDims, int] = OrderedDict()

    def get(self, dims: SeriesDims) -> int | None:
        """Return the cached id of dims, or None."""
        series_id = self._ids.get(dims)
        if series_id is not None:
            self._ids.move_to_end(dims)
        return series_id

    def put(self, dims: SeriesDims, series_id: int) -> None:
        """Remember an id, evicting the least recently used beyond max_size."""
        self._ids[dims] = series_id
        self._ids.move_to_end(dims)
        while len(self._ids) > self.max_size:
            self._ids.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (after a rolled-back write, a reset or retention deleting series)."""
        self._ids.clear()

    def __len__(self) -> int:
        return len(self._ids)


# One cache per connection object, so two stores in one process never share ids.
_caches: weakref.WeakKeyDictionary[aiosqlite.Connection, SeriesCache] = weakref.WeakKeyDictionary()


def series_cache(db: aiosqlite.Connection) -> SeriesCache:
    """Return the series-id cache attached to a connection (created on first use)."""
    cache = _caches.get(db)
    if cache is None:
        cache = _caches[db] = SeriesCache()
    return cache


def invalidate_series_cache(db: aiosqlite.Connection) -> None:
    """Drop cached ids of a connection: call after deleting from `series` or a rolled-back write."""
    cache = _caches.get(db)
    if cache is not None:
        cache.clear()


async def resolve_series_ids(
    db: aiosqlite.Connection,
    keys: Iterable[SeriesDims | SeriesKey],
    now: float,
    *,
    batch_size: int = 1000,
) -> dict[SeriesDims, int]:
    """Return {dims: series_id} for every key, creating missing series rows (batched, bound).

    Runs inside the caller's transaction when there is one; if that transaction rolls back the
    caller must call :func:`invalidate_series_cache`, since new ids would then not exist.
    """
    cache = series_cache(db)
    result: dict[SeriesDims, int] = {}
    missing: list[SeriesDims] = []
    for key in keys:
        dims = series_dims(key) if isinstance(key, SeriesKey) else tuple(key)  # type: ignore[assignment]
        if dims in result:
            continue
        series_id = cache.get(dims)  # type: ignore[arg-type]
        if series_id is None:
            missing.append(dims)  # type: ignore[arg-type]
            result[dims] = -1  # type: ignore[index]
        else:
            result[dims] = series_id  # type: ignore[index]
    if not missing:
        return result
    created = int(now)
    step = max(1, batch_size)
    for start in range(0, len(missing), step):
        chunk = missing[start : start + step]
        await db.executemany(_INSERT, [(*dims, created) for dims in chunk])
    for start in range(0, len(missing), _SELECT_CHUNK):
        chunk = missing[start : start + _SELECT_CHUNK]
        for row in await _select_ids(db, chunk):
            dims = tuple(row[1:])
            result[dims] = row[0]  # type: ignore[index]
            cache.put(dims, row[0])  # type: ignore[arg-type]
    unresolved = [dims for dims in missing if result.get(dims, -1) < 0]
    if unresolved:
        raise LookupError(f"{len(unresolved)} series could not be resolved, e.g. {unresolved[0]!r}")
    return result


async def _select_ids(db: aiosqlite.Connection, chunk: list[SeriesDims]) -> Iterable[tuple]:
    # A VALUES list joined to series probes the UNIQUE index once per wanted row; the shorter
    # "(cols) IN (VALUES ...)" form scans the whole table (EXPLAIN QUERY PLAN, SQLite 3.40).
    placeholders = ", ".join([_ROW] * len(chunk))
    params = [value for dims in chunk for value in dims]
    sql = f"WITH w({_WANTED}) AS (VALUES {placeholders}) {_SELECT_JOIN}"
    return await db.execute_fetchall(sql, params)
