"""Log-bucket latency histogram (DDSketch-style): mergeable by adding counts, <= 1% relative error.

Bucket ``i`` holds latencies in (gamma^(i-1), gamma^i] microseconds with gamma = (1+a)/(1-a),
a = 0.01; latencies of 1 µs or less fall in bucket 0. A bucket's representative value
2·gamma^i/(gamma+1) is within ``a`` of every value in it, so any quantile read from merged
histograms is within 1% of the exact one. Stored as packed little-endian (uint16 index,
uint32 count) pairs sorted by index.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "GAMMA",
    "RELATIVE_ACCURACY",
    "bucket_index",
    "bucket_value",
    "decode",
    "encode",
    "merge_blobs",
    "merge_into",
    "quantile",
    "quantiles",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
_MAX_INDEX = 0xFFFF  # uint16; gamma^65535 µs is far beyond any latency
_PAIR = struct.Struct("<HI")
_log = math.log
_ceil = math.ceil


def bucket_index(latency_ms: float) -> int:
    """Return the bucket index of a latency given in milliseconds."""
    us = latency_ms * 1000.0
    if us <= 1.0:
        return 0
    i = _ceil(_log(us) * _INV_LOG_GAMMA)
    return i if i < _MAX_INDEX else _MAX_INDEX


def bucket_value(index: int) -> float:
    """Return the representative latency (ms) of a bucket: within 1% of any value in it."""
    if index <= 0:
        return 0.001
    return 2.0 * GAMMA**index / (GAMMA + 1.0) / 1000.0


def encode(hist: Mapping[int, int]) -> bytes:
    """Pack a histogram into bytes (sorted (uint16 index, uint32 count) pairs)."""
    items = sorted(hist.items())
    if not items:
        return b""
    flat: list[int] = []
    for index, count in items:
        flat.append(index)
        flat.append(count)
    return struct.pack("<" + "HI" * len(items), *flat)


def decode(blob: bytes | None) -> dict[int, int]:
    """Unpack bytes made by :func:`encode` into a dict of index -> count."""
    if not blob:
        return {}
    return dict(_PAIR.iter_unpack(blob))


def merge_into(acc: dict[int, int], blob_or_hist: bytes | Mapping[int, int] | None) -> dict[int, int]:
    """Add a histogram (packed or a dict) into ``acc`` in place, and return ``acc``."""
    if not blob_or_hist:
        return acc
    pairs: Iterable[tuple[int, int]]
    if isinstance(blob_or_hist, bytes | bytearray | memoryview):
        pairs = _PAIR.iter_unpack(blob_or_hist)
    else:
        pairs = blob_or_hist.items()
    get = acc.get
    for index, count in pairs:
        acc[index] = get(index, 0) + count
    return acc


def merge_blobs(blobs: Iterable[bytes | None]) -> dict[int, int]:
    """Merge many packed histograms into one dict."""
    acc: dict[int, int] = {}
    for blob in blobs:
        if blob:
            merge_into(acc, blob)
    return acc


def quantiles(hist: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """Return the latency (ms) at each quantile q in [0, 1]; None for an empty histogram."""
    total = sum(hist.values())
    if total <= 0:
        return [None for _ in qs]
    items = sorted(hist.items())
    out: list[float | None] = []
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        rank = q * (total - 1)
        seen = 0
        value = bucket_value(items[-1][0])
        for index, count in items:
            seen += count
            if seen > rank:
                value = bucket_value(index)
                break
        out.append(value)
    return out


def quantile(hist: Mapping[int, int], q: float) -> float | None:
    """Return the latency (ms) at one quantile; None for an empty histogram."""
    return quantiles(hist, (q,))[0]
