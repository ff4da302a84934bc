"""Bounded growth in memory: 1M requests over 100k raw paths through recorder + flush, RSS < +50 MB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_growth.py"


@pytest.mark.slow
def test_one_million_requests_over_100k_paths_keep_rss_growth_under_50_mb():
    # A fresh process, so nothing the test session allocated counts against the figure.
    out = subprocess.run(
        [sys.executable, str(BENCH), "--requests", "1000000", "--paths", "100000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["requests"] == 1_000_000
    assert m["endpoint_overflow"] > 0  # the slugs really did hit the endpoint cap
    assert m["growth_mb"] < 50, m
