"""client_analytics writes: hourly per-client rows, counters added, endpoint counts merged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

import aiosqlite

from ..clientinfo import parse_user_agent
from ..snapshot import ClientDelta, ClientKey

__all__ = ["MAX_CLIENT_ENDPOINTS", "TOP_ENDPOINTS", "upsert_clients"]

MAX_CLIENT_ENDPOINTS = 200  # distinct "METHOD /template" kept per client row
TOP_ENDPOINTS = 10

_CLIENT_KEY_COLUMNS = (
    "timestamp, instance, client_ip, user_agent, protocol, workspace_id, environment, test_run"
)
_CLIENT_KEYS = [c.strip() for c in _CLIENT_KEY_COLUMNS.split(",")]
_CLIENT_WANTED = ", ".join(f"w{i}" for i in range(len(_CLIENT_KEYS)))
_CLIENT_SELECT = ", ".join(f"c.{c}" for c in _CLIENT_KEYS) + ", c.endpoint_counts"
_CLIENT_ON = " AND ".join(f"c.{c} = w.w{i}" for i, c in enumerate(_CLIENT_KEYS))
_UPSERT_CLIENT = f"""
INSERT INTO client_analytics ({_CLIENT_KEY_COLUMNS}, user_agent_family, user_agent_version,
    request_count, error_count, latency_count, latency_sum, avg_latency_ms, bytes_sent,
    bytes_received, endpoint_counts, top_endpoints, created_at, updated_at)
VALUES ({", ".join("?" * 21)})
ON CONFLICT ({_CLIENT_KEY_COLUMNS}) DO UPDATE SET
    user_agent_family = excluded.user_agent_family,
    user_agent_version = excluded.user_agent_version,
    request_count = request_count + excluded.request_count,
    error_count = error_count + excluded.error_count,
    latency_count = latency_count + excluded.latency_count,
    latency_sum = latency_sum + excluded.latency_sum,
    avg_latency_ms = CASE WHEN latency_count + excluded.latency_count > 0
        THEN (latency_sum + excluded.latency_sum) / (latency_count + excluded.latency_count) END,
    bytes_sent = bytes_sent + excluded.bytes_sent,
    bytes_received = bytes_received + excluded.bytes_received,
    endpoint_counts = excluded.endpoint_counts,
    top_endpoints = excluded.top_endpoints,
    updated_at = excluded.updated_at
"""


@lru_cache(maxsize=4096)
def _user_agent_info(user_agent: str) -> tuple[str, str]:
    """(family, version) of a user agent; ('', '') when empty or the parser fails."""
    if not user_agent:
        return ("", "")
    try:
        family, version = parse_user_agent(user_agent)
    except Exception:  # a hostile user agent must never fail a flush
        return ("", "")
    return (str(family or ""), str(version or ""))


def _client_key_tuple(key: ClientKey) -> tuple:
    return (
        key.hour, key.instance, key.client_id, key.user_agent, key.protocol,
        key.workspace_id, key.environment, key.test_run,
    )  # fmt: skip


def _merge_endpoint_counts(old_json: str | None, new: Mapping[str, int]) -> dict[str, int]:
    """Add counts, then keep the MAX_CLIENT_ENDPOINTS largest so the JSON stays bounded."""
    merged: dict[str, int] = {}
    if old_json:
        try:
            loaded = json.loads(old_json)
            if isinstance(loaded, dict):
                merged = {str(k): int(v) for k, v in loaded.items()}
        except (ValueError, TypeError):
            merged = {}
    for endpoint, count in new.items():
        merged[endpoint] = merged.get(endpoint, 0) + count
    if len(merged) > MAX_CLIENT_ENDPOINTS:
        merged = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CLIENT_ENDPOINTS])
    return merged


async def upsert_clients(
    db: aiosqlite.Connection,
    clients: Mapping[ClientKey, ClientDelta],
    now: float,
    *,
    batch_size: int = 1000,
) -> int:
    """Add per-client deltas into hourly client_analytics rows (endpoint counts merged); return rows."""
    existing = await _existing_endpoint_counts(db, [_client_key_tuple(k) for k in clients])
    stamp = int(now)
    rows = 0
    batch: list[tuple] = []
    for key, delta in clients.items():
        key_tuple = _client_key_tuple(key)
        counts = _merge_endpoint_counts(existing.get(key_tuple), delta.endpoints)
        top = [e for e, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ENDPOINTS]]
        family, version = _user_agent_info(key.user_agent)
        avg = delta.latency_sum / delta.latency_count if delta.latency_count else None
        batch.append(
            (
                *key_tuple, family, version, delta.request_count, delta.error_count,
                delta.latency_count, delta.latency_sum, avg, delta.bytes_sent, delta.bytes_received,
                json.dumps(counts, separators=(",", ":")), json.dumps(top, separators=(",", ":")),
                stamp, stamp,
            )
        )  # fmt: skip
        if len(batch) >= batch_size:
            await db.executemany(_UPSERT_CLIENT, batch)
            rows += len(batch)
            batch = []
    if batch:
        await db.executemany(_UPSERT_CLIENT, batch)
        rows += len(batch)
    return rows


async def _existing_endpoint_counts(db: aiosqlite.Connection, keys: list[tuple]) -> dict[tuple, str]:
    """Return {client key tuple: endpoint_counts JSON} for the keys that already have a row."""
    found: dict[tuple, str] = {}
    chunk_rows = 400  # 8 values per key
    one = "(" + ", ".join("?" * 8) + ")"
    for start in range(0, len(keys), chunk_rows):
        chunk = keys[start : start + chunk_rows]
        # Joined from a VALUES list so each wanted key is one primary-key probe.
        sql = (
            f"WITH w({_CLIENT_WANTED}) AS (VALUES {', '.join([one] * len(chunk))}) "
            f"SELECT {_CLIENT_SELECT} FROM w CROSS JOIN client_analytics AS c ON {_CLIENT_ON}"
        )
        for row in await db.execute_fetchall(sql, [v for key in chunk for v in key]):
            found[tuple(row[:8])] = row[8]
    return found
