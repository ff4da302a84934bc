"""RSS growth while 1M requests over 100k raw paths go through the recorder and the flush.

Run: python benchmarks/memory_growth.py [--requests 1000000] [--paths 100000] [--rate 1000] [--json]

Each request's raw path is normalised (``normalise_path``, as the middleware does for unmatched
paths) and recorded; the recorder caps distinct endpoints per minute (``max_endpoints``, 1000),
the rest go to ``__other__``. Every simulated second the real ``Flusher`` writes the buffers to a
real SQLite file (injected clock, no sleeping). Half the paths carry ids (they collapse to a few
templates), half are distinct slugs (they do not, so only the cap bounds them).

RSS (from /proc/self/statm) is read after a warm-up of 20k requests and a flush, then at every
flush; the figure is the peak minus that baseline. Target (issue 4): < 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from mockforge_analytics_plugin.capture_types import CapturedRequest
from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.flush import Flusher
from mockforge_analytics_plugin.normalise import normalise_path
from mockforge_analytics_plugin.recorder import Recorder
from mockforge_analytics_plugin.store.derived import rss_bytes
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

T0 = 1_795_392_000.0
WARM_UP = 20_000


def _word(i: int) -> str:
    """A letters-only slug for i (never id-like, so it survives normalisation)."""
    letters = []
    i += 26 * 26  # at least three letters
    while i:
        i, r = divmod(i, 26)
        letters.append(chr(97 + r))
    return "".join(letters)


def raw_paths(n: int, seed: int) -> list[str]:
    """n distinct raw paths: half with numeric ids or UUIDs, half distinct slugs."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2:
            out.append(f"/docs/section-{_word(i)}/page")
        elif i % 4 == 0:
            out.append(f"/api/users/{i}/orders/{rng.getrandbits(128):032x}")
        else:
            out.append(f"/api/items/{i}")
    rng.shuffle(out)
    return out


async def measure(requests: int, paths: int, rate: int, seed: int = 1) -> dict[str, float]:
    """Drive the recorder and flush; return baseline/peak/final RSS (MB) and counters."""
    folder = Path(tempfile.mkdtemp(prefix="mockforge-mem-"))
    config = AnalyticsConfig(instance="bench:1")
    store = await SQLiteStore.open(folder / "mem.db")
    recorder = Recorder(config, "bench:1")
    flusher = Flusher(recorder, store, config, clock=lambda: T0)
    rng = random.Random(seed)
    pool = raw_paths(paths, seed)
    clients = [f"10.1.0.{i}" for i in range(20)]
    t = T0
    peak = baseline = 0
    started = time.perf_counter()
    total = requests + WARM_UP
    for i in range(total):
        path = pool[i % paths]
        status = 404 if i % 10 == 0 else 200
        recorder.record(
            CapturedRequest(
                timestamp=t + (i % rate) / rate, protocol="http", method="GET", endpoint=normalise_path(path),
                path=path, status_code=status, duration_ms=rng.lognormvariate(2.3, 0.9), bytes_sent=400,
                client_id=clients[i % 20], user_agent="bench/1.0", test_run="run-1" if i & 1 else "",
                error_type="HTTP 404" if status == 404 else "",
            )
        )  # fmt: skip
        if (i + 1) % rate == 0:
            t += 1.0
            result = await flusher.flush_once(t)
            if not result.ok:
                raise RuntimeError(f"flush failed: {flusher.last_error}")
            if i + 1 == WARM_UP:
                gc.collect()
                baseline = peak = rss_bytes()
            elif i + 1 > WARM_UP:
                peak = max(peak, rss_bytes())
    await flusher.flush_once(t + 1)
    gc.collect()
    final = rss_bytes()
    elapsed = time.perf_counter() - started
    rows = (await store.reader.execute_fetchall("SELECT COUNT(*) FROM metrics_aggregates_minute"))[0][0]
    series = (await store.reader.execute_fetchall("SELECT COUNT(*) FROM series"))[0][0]
    await store.close()
    mb = 1024 * 1024
    return {
        "requests": requests,
        "raw_paths": paths,
        "baseline_rss_mb": baseline / mb,
        "peak_rss_mb": max(peak, final) / mb,
        "final_rss_mb": final / mb,
        "growth_mb": (max(peak, final) - baseline) / mb,
        "endpoint_overflow": recorder.drops.endpoint_overflow,
        "minute_rows": rows,
        "series": series,
        "seconds": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="simulated req/s (one flush per second)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    m = asyncio.run(measure(args.requests, args.paths, args.rate))
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{m['requests']:,} requests over {m['raw_paths']:,} raw paths in {m['seconds']:.1f} s: "
              f"RSS {m['baseline_rss_mb']:.1f} MB after warm-up, peak {m['peak_rss_mb']:.1f} MB, "
              f"final {m['final_rss_mb']:.1f} MB -> growth {m['growth_mb']:.1f} MB (target < 50 MB); "
              f"{m['endpoint_overflow']:,} over the endpoint cap, {m['series']:,} series")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
