"""Query filters -> SQL conditions with bound values: one implementation for every table."""

from __future__ import annotations

from typing import Any

from ..params import QueryParams, StatusFilter

__all__ = ["column_conditions", "glob_pattern", "status_condition"]


def glob_pattern(pattern: str) -> str:
    """Turn a user glob (only `*` is special) into a SQLite GLOB pattern with `?` and `[` literal."""
    return "".join("[" + ch + "]" if ch in "?[" else ch for ch in pattern)


def status_condition(column: str, status: StatusFilter, args: list[Any]) -> str:
    """`(column IN (...) OR column in a class range ...)`; appends the bound values to `args`."""
    parts: list[str] = []
    if status.codes:
        parts.append(f"{column} IN ({', '.join('?' * len(status.codes))})")
        args.extend(status.codes)
    for cls in status.classes:
        parts.append(f"({column} >= ? AND {column} < ?)")
        args.extend((cls * 100, cls * 100 + 100))
    return "(" + " OR ".join(parts) + ")" if parts else "1"


def column_conditions(
    p: QueryParams, columns: dict[str, str], alias: str = ""
) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their bound values) for every filter of `p` that `columns` maps to a column."""
    conds: list[str] = []
    args: list[Any] = []
    prefix = f"{alias}." if alias else ""
    for name, column in columns.items():
        value = getattr(p, name, None)
        if value is None:
            continue
        col = prefix + column
        if name == "status_code":
            conds.append(status_condition(col, value, args))
        elif name == "endpoint" and p.endpoint_is_glob:
            conds.append(f"{col} GLOB ?")
            args.append(glob_pattern(value))
        elif isinstance(value, tuple):
            conds.append(f"{col} IN ({', '.join('?' * len(value))})")
            args.extend(value)
        else:
            conds.append(f"{col} = ?")
            args.append(value)
    return conds, args
