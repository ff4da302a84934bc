"""Where the capture path's wall time goes that its instruction count does not show: simulated
L1 cache misses per request of the real server under concurrent load.

Each variant's server (the same commands as benchmarks/overhead.py) runs under
``valgrind --tool=callgrind --cache-sim=yes`` with instrumentation off until a warm-up is done;
then ``wrk -t1 -c32`` drives it for --seconds and only that window is counted. Printed per request:
instructions (Ir), data reads and writes, L1 instruction misses (I1mr), L1 data misses (D1mr,
D1mw), last-level misses. Two variants run at a time (counts do not depend on load).

Run:  python benchmarks/overhead_cache.py [--variants noop,on] [--seconds 40] [--keep DIR]
--keep keeps the callgrind outputs (``DIR/VARIANT/callgrind.out.1`` is the window) for
``callgrind_annotate --show=Ir,I1mr,D1mr --sort=I1mr``. Needs valgrind and wrk.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import overhead


def cache_window(variant: str, folder: Path, seconds: float) -> tuple[int, dict[str, int]]:
    """(requests, {event: count}) of one server's counted window under wrk."""
    out = folder / "callgrind.out"
    server = overhead.start_counting_server(folder, variant, out, "--cache-sim=yes")
    try:
        url = f"http://127.0.0.1:{server.port}{overhead.PATH}"
        report = subprocess.run(["wrk", "-t1", "-c32", f"-d{int(seconds)}s", url],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        overhead.callgrind_control(server.proc.pid, "--dump")
    finally:
        server.stop(timeout=300)
    m = re.search(r"(\d+) requests in", report)
    if not m:
        raise SystemExit(f"{variant}: no request count in wrk's report:\n{report}")
    text = Path(f"{out}.1").read_text()
    events = re.search(r"^events:\s+(.*)$", text, re.MULTILINE)
    totals = re.search(r"^totals:\s+(.*)$", text, re.MULTILINE)
    if not events or not totals:
        raise SystemExit(f"{variant}: no events/totals in {out}.1")
    return int(m.group(1)), dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))


def main() -> None:
    """Count each variant's window and print events per request, and each against noop."""
    parser = argparse.ArgumentParser(description="simulated cache misses per request (see module doc)")
    parser.add_argument("--variants", default="noop,on", help="comma-separated (default noop,on)")
    parser.add_argument("--seconds", type=float, default=40.0, help="wrk duration per variant (default 40)")
    parser.add_argument("--keep", type=Path, help="keep the callgrind outputs in this folder")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    with tempfile.TemporaryDirectory(prefix="mockforge-cache-") as tmp, ThreadPoolExecutor(2) as pool:
        base = args.keep or Path(tmp)
        for v in variants:
            (base / v).mkdir(parents=True, exist_ok=True)
        jobs = {v: pool.submit(cache_window, v, base / v, args.seconds) for v in variants}
        per = {}
        for v, job in jobs.items():
            n, counts = job.result()
            per[v] = {k: c / n for k, c in counts.items()}
    print("per request, under wrk -c32 (callgrind --cache-sim=yes; periodic tasks held off):")
    for v, events in per.items():
        above = per.get("noop")
        cells = [f"{k} {x:,.0f}" + (f" ({x - above[k]:+,.0f})" if above and v != "noop" else "")
                 for k, x in events.items()]  # fmt: skip
        print(f"  {v:<8}" + "  ".join(cells))


if __name__ == "__main__":
    main()
