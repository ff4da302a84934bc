"""Histogram blob size and encode / decode / merge speed: the stored format against format 1.

Run: python benchmarks/histogram_bench.py [--repeat 5] [--blobs 2000]

Format 1 (the first one: packed (uint16 index, uint32 count) pairs, 6 bytes per bucket) is
reproduced here as the reference; ``mockforge_analytics_plugin.histogram`` is whatever format the
tree stores now. With numpy (and ``histogram.arrays``), the note under each shape times the
query layer's vectorised path too: decode every blob to (owner, index, count) arrays and
``bincount`` them per group (20 groups), against ``numpy.frombuffer`` of format 1.

Shapes are histograms of log-normal latencies (median 20 ms, sigma 0.8) as the
store holds them: a sparse minute (8 observations), a busy minute (500), an hour (30,000) and a
day (720,000). For each shape: mean blob bytes, encode / decode per blob, and merge_blobs over
--blobs blobs (what a query does), best of --repeat runs. Merging must not get more than ~1.3x
slower than format 1.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from mockforge_analytics_plugin import histogram

_PAIR = struct.Struct("<HI")


def v1_encode(hist: Mapping[int, int]) -> bytes:
    """Format 1 encode (as it was)."""
    items = sorted(hist.items())
    if not items:
        return b""
    return struct.pack("<" + "HI" * len(items), *[v for pair in items for v in pair])


def v1_decode(blob: bytes) -> dict[int, int]:
    """Format 1 decode (as it was)."""
    return dict(_PAIR.iter_unpack(blob)) if blob else {}


def v1_merge_into(acc: dict[int, int], blob: bytes | Mapping[int, int] | None) -> dict[int, int]:
    """Format 1 merge_into (as it was)."""
    if not blob:
        return acc
    pairs: Iterable[tuple[int, int]]
    if isinstance(blob, bytes | bytearray | memoryview):  # noqa: SIM108 - as the original read
        pairs = _PAIR.iter_unpack(blob)
    else:
        pairs = blob.items()
    get = acc.get
    for index, count in pairs:
        acc[index] = get(index, 0) + count
    return acc


def v1_merge_blobs(blobs: Iterable[bytes | None]) -> dict[int, int]:
    """Format 1 merge_blobs (as it was: merge_into per blob)."""
    acc: dict[int, int] = {}
    for blob in blobs:
        if blob:
            v1_merge_into(acc, blob)
    return acc


_V1_DTYPE = None
GROUPS = 20  # keys a grouped query merges into (e.g. top endpoints)


def v1_np_counts(blobs: list[bytes]) -> object:
    """Format 1 as query.py read it with numpy: frombuffer of the joined blobs, then bincount."""
    import numpy as np

    global _V1_DTYPE
    if _V1_DTYPE is None:
        _V1_DTYPE = np.dtype([("i", "<u2"), ("c", "<u4")])
    pairs = np.frombuffer(b"".join(blobs), dtype=_V1_DTYPE)
    lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)) // 6
    owner = np.repeat(np.arange(len(blobs), dtype=np.int64) % GROUPS, lengths)
    index = pairs["i"].astype(np.int64)
    return np.bincount(owner * 4096 + index, weights=pairs["c"], minlength=GROUPS * 4096)


def np_counts(blobs: list[bytes]) -> object:
    """The stored format read with numpy (histogram.arrays), then the same bincount."""
    import numpy as np

    owner, index, count = histogram.arrays(blobs)
    return np.bincount(owner % GROUPS * 4096 + index, weights=count, minlength=GROUPS * 4096)


def shape(rng: random.Random, observations: int) -> dict[int, int]:
    """A histogram of `observations` log-normal latencies."""
    hist: dict[int, int] = {}
    index = histogram.bucket_index
    for _ in range(observations):
        i = index(rng.lognormvariate(2.9957, 0.8))
        hist[i] = hist.get(i, 0) + 1
    return hist


def each(fn: Callable[[Any], object], items: list[Any]) -> list[object]:
    """fn over every item."""
    return [fn(x) for x in items]


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls, seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--blobs", type=int, default=2000, help="blobs per merge_blobs call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    try:
        import numpy  # noqa: F401

        numpy_ok = hasattr(histogram, "arrays")  # the vectorised reader of the stored format
    except ImportError:
        numpy_ok = False
    shapes = {"sparse minute (8)": 8, "busy minute (500)": 500, "hour (30k)": 30_000, "day (720k)": 720_000}
    print(f"python {sys.version.split()[0]}; best of {args.repeat}; merge = merge_blobs over --blobs blobs")
    head = (
        f"{'shape':20s} {'buckets':>7s} {'bytes v1':>8s} {'bytes now':>9s} "
        f"{'enc v1':>8s} {'enc now':>8s} {'dec v1':>8s} {'dec now':>8s} "
        f"{'merge v1':>9s} {'merge now':>9s} {'merge x':>7s}"
    )
    print(head + "\n" + "-" * len(head))
    worst = 0.0
    for label, observations in shapes.items():
        count = 200 if observations <= 500 else 20
        hists = [shape(rng, observations) for _ in range(count)]
        old = [v1_encode(h) for h in hists]
        new = [histogram.encode(h) for h in hists]
        for h, b in zip(hists, new, strict=True):
            assert histogram.decode(b) == h == v1_decode(v1_encode(h))
        n_merge = args.blobs if observations <= 500 else max(20, args.blobs // 20)
        old_m = (old * (n_merge // count + 1))[:n_merge]
        new_m = (new * (n_merge // count + 1))[:n_merge]
        assert histogram.merge_blobs(new_m) == v1_merge_blobs(old_m)
        us = 1e6 / count
        enc_old = best(partial(each, v1_encode, hists), args.repeat) * us
        enc_new = best(partial(each, histogram.encode, hists), args.repeat) * us
        dec_old = best(partial(each, v1_decode, old), args.repeat) * us
        dec_new = best(partial(each, histogram.decode, new), args.repeat) * us
        merge_old = best(partial(v1_merge_blobs, old_m), args.repeat) * 1e3
        merge_new = best(partial(histogram.merge_blobs, new_m), args.repeat) * 1e3
        ratio = merge_new / merge_old
        worst = max(worst, ratio)
        np_note = ""
        if numpy_ok:
            np_old = best(partial(v1_np_counts, old_m), args.repeat) * 1e3
            np_new = best(partial(np_counts, new_m), args.repeat) * 1e3
            np_note = f"; numpy path: v1 {np_old:.2f} ms, now {np_new:.2f} ms ({np_new / np_old:.1f}x)"
        buckets = sum(len(h) for h in hists) / count
        print(
            f"{label:20s} {buckets:7.0f} {sum(map(len, old)) / count:8.0f} {sum(map(len, new)) / count:9.0f} "
            f"{enc_old:6.1f}us {enc_new:6.1f}us {dec_old:6.1f}us {dec_new:6.1f}us "
            f"{merge_old:7.1f}ms {merge_new:7.1f}ms {ratio:6.2f}x"
        )  # fmt: skip
        print(f"{'':20s} (merge of {n_merge} blobs{np_note})")
    print(f"\nworst merge slowdown against format 1: {worst:.2f}x (limit ~1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
