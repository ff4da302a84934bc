"""TEMPORARY sample data for developing the pages before the query layer lands. Remove before release."""

from __future__ import annotations

from typing import Any

from .params import QueryParams

EVIL = "<script>alert(1)</script>"


class SampleSource:
    """Fixed, deterministic figures shaped like the API's answers (TEMPORARY)."""

    def __init__(self, runtime: Any) -> None:
        self.empty = bool(getattr(runtime, "sample_empty", False))

    async def overview(self, qp: QueryParams) -> dict[str, Any]:
        if self.empty:
            return {
                "total_requests": 0,
                "total_errors": 0,
                "error_rate": 0.0,
                "requests_per_second": 0.0,
                "avg_latency_ms": 0.0,
                "p95_latency_ms": None,
                "p99_latency_ms": None,
                "active_connections": 0,
                "unique_clients": 0,
                "dropped_events": 0,
            }
        return {
            "total_requests": 1200,
            "total_errors": 30,
            "error_rate": 2.5,
            "requests_per_second": 0.33,
            "avg_latency_ms": 42.0,
            "p50_latency_ms": 30.0,
            "p95_latency_ms": 180.0,
            "p99_latency_ms": 640.0,
            "active_connections": 3,
            "unique_clients": 4,
            "dropped_events": 0,
        }

    async def request_series(self, qp: QueryParams, group_by: str) -> list[dict[str, Any]]:
        if self.empty:
            return []
        ts = list(range(qp.start, qp.end, qp.step))
        return [
            {"label": "http", "data": [{"timestamp": t, "value": (i * 7) % 23} for i, t in enumerate(ts)]},
            {"label": "websocket", "data": [{"timestamp": t, "value": i % 3} for i, t in enumerate(ts)]},
        ]

    async def latency_series(self, qp: QueryParams) -> list[dict[str, Any]]:
        if self.empty:
            return []
        return [
            {"timestamp": t, "p50": 20 + i % 5, "p95": 90 + i % 17, "p99": 300 + i % 40, "avg": 30 + i % 7}
            for i, t in enumerate(range(qp.start, qp.end, qp.step))
        ]

    async def status_codes(self, qp: QueryParams) -> list[dict[str, Any]]:
        return (
            []
            if self.empty
            else [
                {"status_code": 200, "count": 1100},
                {"status_code": 404, "count": 70},
                {"status_code": 500, "count": 30},
            ]
        )

    async def protocols(self, qp: QueryParams) -> list[dict[str, Any]]:
        return (
            []
            if self.empty
            else [{"protocol": "http", "request_count": 1150}, {"protocol": "websocket", "request_count": 50}]
        )

    async def top_endpoints(self, qp: QueryParams, limit: int | None) -> list[dict[str, Any]]:
        if self.empty:
            return []
        return [
            {
                "endpoint": "/api/users/{id}",
                "method": "GET",
                "protocol": "http",
                "request_count": 900,
                "error_count": 10,
                "error_rate": 1.1,
                "avg_latency_ms": 35.0,
                "p95_latency_ms": 120.0,
                "p99_latency_ms": 400.0,
            },
            {
                "endpoint": "/" + EVIL,
                "method": "GET",
                "protocol": "http",
                "request_count": 3,
                "error_count": 3,
                "error_rate": 100.0,
                "avg_latency_ms": 1.0,
                "p95_latency_ms": 1.0,
                "p99_latency_ms": 1.0,
            },
        ]

    async def error_events(self, qp: QueryParams, limit: int) -> list[dict[str, Any]]:
        if self.empty:
            return []
        return [
            {
                "timestamp": qp.end - 30,
                "method": "GET",
                "endpoint": "/" + EVIL,
                "path": "/" + EVIL,
                "status_code": 404,
                "error_type": "HTTP 404",
                "error_message": "",
                "client_ip": EVIL,
                "user_agent": "<b>ua</b>",
                "trace_id": "abc123",
                "fault_injected": False,
            }
        ]

    async def heatmap(self, qp: QueryParams, days: int) -> list[dict[str, Any]]:
        return (
            []
            if self.empty
            else [
                {"day_of_week": d, "hour": h, "request_count": (d + 1) * h}
                for d in range(7)
                for h in range(24)
            ]
        )

    async def clients(self, qp: QueryParams, limit: int) -> dict[str, Any]:
        if self.empty:
            return {"clients": [], "test_runs": []}
        return {
            "clients": [
                {
                    "client": EVIL,
                    "user_agent": "<img src=x onerror=alert(1)>",
                    "request_count": 5,
                    "error_count": 1,
                    "avg_latency_ms": 3.0,
                    "bytes_sent": 100,
                    "top_endpoints": ["GET /a"],
                }
            ],
            "test_runs": [
                {
                    "test_run": "run-1",
                    "request_count": 5,
                    "error_count": 1,
                    "error_rate": 20.0,
                    "avg_latency_ms": 3.0,
                }
            ],
        }

    async def error_summary(self, qp: QueryParams) -> list[dict[str, Any]]:
        return (
            []
            if self.empty
            else [
                {
                    "error_type": "HTTP 404",
                    "error_category": "client_error",
                    "count": 3,
                    "endpoints": ["/" + EVIL],
                    "last_occurrence": qp.end - 30,
                }
            ]
        )

    async def recent_requests(self, qp: QueryParams, limit: int) -> list[dict[str, Any]]:
        if self.empty:
            return []
        return [
            {
                "timestamp": qp.end - 5,
                "method": "GET",
                "path": "/" + EVIL,
                "endpoint": "/" + EVIL,
                "status_code": 404,
                "duration_ms": 1.5,
                "client_id": EVIL,
                "user_agent": "<i>x</i>",
                "test_run": "",
                "fault_injected": False,
            }
        ]
