"""The part-2 reads use the time indexes: EXPLAIN QUERY PLAN of every statement the routes run."""

from __future__ import annotations

import re

import pytest
from support.api2_traffic import api_client

ROUTES = [
    ("errors?client=10.0.0.1&status_code=5xx&endpoint=/api/*", "error_events"),
    ("top-errors?method=GET", "error_events"),
    ("client-analysis?client=10.0.0.1", "client_analytics"),
]


@pytest.mark.parametrize(("route", "table"), ROUTES)
async def test_route_reads_use_a_time_range_search(tmp_path, route, table):
    async with api_client(tmp_path) as (client, runtime):
        statements: list[str] = []
        reader = runtime.store.reader
        await reader.set_trace_callback(statements.append)
        r = await client.get(f"/analytics/api/{route}")
        await reader.set_trace_callback(None)
        assert r.status_code == 200
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and table in s]
        assert reads, statements
        for sql in reads:
            # The trace shows the statement with its values inlined: plan exactly that.
            async with reader.execute("EXPLAIN QUERY PLAN " + sql) as cur:
                plan = " | ".join(row[-1] for row in await cur.fetchall())
            steps = plan.split(" | ")
            # The table (or its alias c) is searched by a time range, never scanned.
            assert any(re.match(rf"SEARCH ({table}|c) USING", step) for step in steps), plan
            assert not any(re.match(rf"SCAN ({table}|c)\b", step) for step in steps), plan
            assert "timestamp>? AND timestamp<?" in plan, plan
