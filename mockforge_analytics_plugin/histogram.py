"""Log-bucket latency histogram (DDSketch-style): mergeable by adding counts, <= 1% relative error.

Bucket ``i`` holds latencies in (gamma^(i-1), gamma^i] microseconds with gamma = (1+a)/(1-a),
a = 0.01; latencies of 1 µs or less fall in bucket 0. A bucket's representative value
2·gamma^i/(gamma+1) is within ``a`` of every value in it, so any quantile read from merged
histograms is within 1% of the exact one.

Stored format (format 2; the 6-byte (uint16 index, uint32 count) pairs of format 1 are no longer
readable, nothing stored with them was released): a blob is a sequence of self-delimiting
segments, so the concatenation of two blobs is a valid blob holding their sum. A segment is

    header byte  bits 0-1 kind, bits 2-3 count width code (0: 1, 1: 2, 2: 4, 3: 8 bytes),
                 bits 4-7 the entry count n when 1..15, 0 when a uint16 n follows the base
    base         uint16, the first bucket index
    [n]          uint16, when the header's n field is 0
    body         by kind, all little-endian:
      0 PAIRS    n index deltas (uint8; the first from base, so usually 0) then n counts
      1 RUN      n counts for buckets base .. base+n-1 (zero counts allowed, skipped)
      2 SAMPLES  n index deltas (uint8), one per observation: counts are the repeats (no counts)

The encoder splits the sorted buckets where two neighbours are more than 255 apart (a factor of
~160 in latency) and picks, per segment, the smallest kind and the narrowest count width. A
minute of a sparse series costs about one byte per observation, a dense one a byte or two per
bucket, instead of six. Decoding stays in C: ``itertools.accumulate`` over the delta bytes,
``struct`` for the counts, ``collections.Counter`` for samples.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, compress
from typing import Any

try:  # the C helper behind Counter.update: mapping[x] = mapping.get(x, 0) + 1 for each x
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters

    def _count_elements(mapping: dict[int, int], iterable: Iterable[int]) -> None:
        get = mapping.get
        for x in iterable:
            mapping[x] = get(x, 0) + 1


__all__ = [
    "GAMMA",
    "RELATIVE_ACCURACY",
    "arrays",
    "bucket_index",
    "bucket_value",
    "decode",
    "encode",
    "encode_with_quantiles",
    "merge_blobs",
    "merge_into",
    "quantile",
    "quantiles",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
_MAX_INDEX = 0xFFFF  # uint16; gamma^65535 µs is far beyond any latency
_log = math.log
_ceil = math.ceil

PAIRS, RUN, SAMPLES = 0, 1, 2
_WIDTHS = (1, 2, 4, 8)
_CODES = "BHIQ"
_MAX_GAP = 255  # largest index delta a uint8 holds
_MAX_N = 0xFFFF
_U16 = struct.Struct("<H")
_unpack_u16 = _U16.unpack_from
_COUNTS: dict[tuple[int, int], struct.Struct] = {}  # (width code, n) -> "<nX"


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


_BUCKET_VALUES = [bucket_value(i) for i in range(4096)]  # latencies up to ~1e30 s


def _value(index: int) -> float:
    return _BUCKET_VALUES[index] if 0 <= index < 4096 else bucket_value(index)


# -- encoding --------------------------------------------------------------------------------


def _counts_struct(wcode: int, n: int) -> struct.Struct:
    s = _COUNTS.get((wcode, n))
    if s is None:
        if len(_COUNTS) > 4096:
            _COUNTS.clear()
        s = _COUNTS[(wcode, n)] = struct.Struct(f"<{n}{_CODES[wcode]}")
    return s


def _wcode(largest: int) -> int:
    if largest < 0x100:
        return 0
    if largest < 0x10000:
        return 1
    if largest < 0x100000000:
        return 2
    if largest < 0x10000000000000000:
        return 3
    raise ValueError(f"histogram count too large: {largest}")


def _header(kind: int, wcode: int, base: int, n: int) -> bytes:
    if n < 16:
        return bytes((kind | wcode << 2 | n << 4, base & 0xFF, base >> 8))
    return bytes((kind | wcode << 2, base & 0xFF, base >> 8, n & 0xFF, n >> 8))


def _segment(indexes: list[int], counts: list[int], out: list[bytes]) -> None:
    """Append the smallest encoding of one cluster (sorted indexes, gaps <= 255, counts >= 1)."""
    n = len(indexes)
    base = indexes[0]
    span = indexes[-1] - base + 1
    total = sum(counts)
    wcode = _wcode(max(counts))
    width = _WIDTHS[wcode]
    size_pairs = n * (1 + width)
    size_run = span * width
    if total <= size_pairs and total <= size_run and total <= _MAX_N:
        # SAMPLES: one delta byte per observation (the repeats of an index are deltas of 0).
        deltas = bytearray(total)
        pos = 0
        prev = base
        for index, count in zip(indexes, counts, strict=True):
            deltas[pos] = index - prev
            pos += count  # the repeats stay 0
            prev = index
        out.append(_header(SAMPLES, 0, base, total))
        out.append(bytes(deltas))
        return
    if size_run <= size_pairs and span <= _MAX_N:
        full = [0] * span
        for index, count in zip(indexes, counts, strict=True):
            full[index - base] = count
        out.append(_header(RUN, wcode, base, span))
        out.append(_counts_struct(wcode, span).pack(*full))
        return
    for start in range(0, n, _MAX_N):
        idx = indexes[start : start + _MAX_N]
        cnt = counts[start : start + _MAX_N]
        m = len(idx)
        prev = idx[0]
        deltas = bytearray(m)
        for k in range(1, m):
            deltas[k] = idx[k] - idx[k - 1]
        out.append(_header(PAIRS, wcode, prev, m))
        out.append(bytes(deltas))
        out.append(_counts_struct(wcode, m).pack(*cnt))


def _encode_items(items: list[tuple[int, int]]) -> bytes:
    """Encode sorted (index, count) pairs with count >= 1."""
    out: list[bytes] = []
    indexes: list[int] = []
    counts: list[int] = []
    prev = -_MAX_GAP - 1
    for index, count in items:
        if not 0 <= index <= _MAX_INDEX:
            raise ValueError(f"bucket index out of range: {index}")
        if index - prev > _MAX_GAP and indexes:
            _segment(indexes, counts, out)
            indexes = []
            counts = []
        indexes.append(index)
        counts.append(count)
        prev = index
    if indexes:
        _segment(indexes, counts, out)
    return b"".join(out)


def _sorted_items(hist: Mapping[int, int]) -> list[tuple[int, int]]:
    items = sorted(hist.items())
    for _, count in items:
        if count <= 0:
            if count < 0:
                raise ValueError(f"negative histogram count: {count}")
            return [(i, c) for i, c in items if c]  # empty buckets carry nothing: dropped
    return items


def encode(hist: Mapping[int, int]) -> bytes:
    """Pack a histogram into bytes (format 2, see the module docstring); empty -> b""."""
    items = _sorted_items(hist)
    return _encode_items(items) if items else b""


def encode_with_quantiles(
    hist: Mapping[int, int],
) -> tuple[bytes, float | None, float | None, float | None]:
    """Return ``encode(hist)`` and p50/p95/p99 (equal to :func:`quantiles`) from one sort."""
    items = _sorted_items(hist)
    if not items:
        return b"", None, None, None
    blob = _encode_items(items)
    if len(items) == 1:
        v = _value(items[0][0])
        return blob, v, v, v
    last = sum(c for _, c in items) - 1
    r50, r95, r99 = 0.5 * last, 0.95 * last, 0.99 * last
    seen = 0
    p50 = p95 = None
    for index, count in items:
        seen += count
        if p50 is None and seen > r50:
            p50 = _value(index)
        if p95 is None and seen > r95:
            p95 = _value(index)
        if seen > r99:
            v = _value(index)
            return blob, v if p50 is None else p50, v if p95 is None else p95, v
    v = _value(items[-1][0])
    return blob, v if p50 is None else p50, v if p95 is None else p95, v


# -- decoding --------------------------------------------------------------------------------


def _segments(blob: bytes | bytearray | memoryview) -> Iterator[tuple[int, Iterable]]:
    """Yield (kind, iterable) per segment: (index, count) pairs, or sample indexes for SAMPLES."""
    view = memoryview(blob)
    end = len(view)
    pos = 0
    try:
        while pos < end:
            h = view[pos]
            base = view[pos + 1] | view[pos + 2] << 8
            n = h >> 4
            if n:
                pos += 3
            else:
                n = view[pos + 3] | view[pos + 4] << 8
                pos += 5
            kind = h & 3
            if kind == SAMPLES:
                stop = pos + n
                if stop > end:
                    raise ValueError
                samples = accumulate(view[pos:stop], initial=base)
                next(samples)  # the initial value itself
                yield SAMPLES, samples
                pos = stop
                continue
            wcode = h >> 2 & 3
            if kind == PAIRS:
                counts = _counts_struct(wcode, n).unpack_from(view, pos + n)
                indexes = accumulate(view[pos : pos + n], initial=base)
                next(indexes)  # the initial value itself
                yield PAIRS, zip(indexes, counts, strict=True)
                pos += n + n * _WIDTHS[wcode]
            elif kind == RUN:
                counts = _counts_struct(wcode, n).unpack_from(view, pos)
                yield PAIRS, compress(zip(range(base, base + n), counts, strict=True), counts)
                pos += n * _WIDTHS[wcode]
            else:
                raise ValueError
    except (ValueError, IndexError, struct.error):
        raise ValueError(f"malformed histogram blob at byte {pos} of {end}") from None


def decode(blob: bytes | bytearray | memoryview | None) -> dict[int, int]:
    """Unpack bytes made by :func:`encode` (or a concatenation of such) into index -> count."""
    if not blob:
        return {}
    out: dict[int, int] = {}
    for kind, entries in _segments(blob):
        if kind == SAMPLES:
            part: Mapping[int, int] = Counter(entries)
        else:
            part = dict(entries)
        if out:
            get = out.get
            for index, count in part.items():
                out[index] = get(index, 0) + count
        else:
            out = part if type(part) is dict else dict(part)
    return out


def merge_into(acc: dict[int, int], blob_or_hist: bytes | Mapping[int, int] | None) -> dict[int, int]:
    """Add a histogram (packed or a dict) into ``acc`` in place, and return ``acc``."""
    if not blob_or_hist:
        return acc
    get = acc.get
    if type(blob_or_hist) is bytes:
        # Fast paths for a blob of one segment (a row written once, or compacted: most rows).
        b = blob_or_hist
        h = b[0]
        n = h >> 4
        start = 3
        if not n and len(b) >= 5:
            n = b[3] | b[4] << 8
            start = 5
        kind = h & 3
        if not n:
            pass  # malformed or empty: the general path below says which
        elif kind == SAMPLES:
            if start + n == len(b):
                samples = accumulate(b[start:], initial=b[1] | b[2] << 8)
                next(samples)  # the initial value itself
                _count_elements(acc, samples)  # in C
                return acc
        elif kind == RUN:
            wcode = h >> 2 & 3
            if start + n * _WIDTHS[wcode] == len(b):
                counts = _counts_struct(wcode, n).unpack_from(b, start)
                base = b[1] | b[2] << 8
                for index, count in compress(zip(range(base, base + n), counts, strict=True), counts):
                    acc[index] = get(index, 0) + count
                return acc
    if isinstance(blob_or_hist, bytes | bytearray | memoryview):
        for kind, entries in _segments(blob_or_hist):
            if kind == SAMPLES:
                _count_elements(acc, entries)
            else:
                for index, count in entries:
                    acc[index] = get(index, 0) + count
        return acc
    for index, count in blob_or_hist.items():
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


def arrays(blobs: Sequence[bytes | None]) -> tuple[Any, Any, Any]:
    """Decode many blobs at once for numpy: (blob ordinal, bucket index, count) int64 arrays."""
    from .histogram_numpy import arrays as _arrays

    return _arrays(blobs)
