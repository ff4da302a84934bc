"""The flush's histogram encoder: deltas of one flush are small, so they take a short path.

A delta holds the requests of one series in one flush interval: a handful of buckets, counts
below 256, all within 255 buckets of each other. Such a histogram is one segment of the stored
format (``histogram``'s docstring). :func:`encode_deltas` encodes a slice of them at once with a
few numpy operations when that segment is SAMPLES (a byte an observation: the usual case, a few
requests in distinct buckets); :func:`encode_delta` encodes one in plain Python, choosing the
segment kind by the encoder's rule; anything else (a wide spread, a count of 256 or more, a bad
index or count) goes to :func:`histogram.encode`. The bytes are always those of
``histogram.encode`` (property tests in tests/test_store_delta_encode.py).

:func:`encode_deltas` hands them out as ``bytearray``: the sqlite3 module binds a bytearray as a
BLOB straight away, while ``bytes`` (like ``None``) first goes through its adapter lookup, which
on Python 3.11 formats and discards an AttributeError for every value. Same stored bytes; a
10k-row update flush 493 -> 452 M instructions (callgrind, `flush_bench.py --plain`), ~0.6 us a
row on a slow core.

Why not ``histogram_numpy.encode_all``: it is general (any spread, count widths, repeated
entries), so it runs many more numpy operations per call and sums entries with a dense bincount
over histograms x bucket span. Instructions per 10k `flush_bench.py` deltas (callgrind; slices
of 250 as the flush encodes them on the event loop): encode_all 231 M, encode_delta 175 M,
encode_deltas 90 M (79 M since its input columns are read in C, see ``_columns``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

from ..histogram import encode

np: Any
try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a dependency; the plain path still works
    np = None

__all__ = ["encode_delta", "encode_deltas"]

_MAX_INDEX = 0xFFFF
_MAX_SPAN = 256  # buckets base .. base+255: one segment (the encoder splits at gaps over 255)


def encode_delta(hist: Mapping[int, int]) -> bytes:
    """``histogram.encode(hist)``, fast for one segment of one-byte counts (a flush's delta)."""
    n = len(hist)
    if n == 1:
        for index, count in hist.items():
            if 0 <= index <= _MAX_INDEX and 0 < count < 256:
                # One observation: SAMPLES of one delta byte; more in one bucket: RUN of one count.
                if count == 1:
                    return bytes((0x12, index & 255, index >> 8, 0))
                return bytes((0x11, index & 255, index >> 8, count))
        return encode(hist)
    if not n:
        return b""
    counts = hist.values()
    if max(counts) >= 256 or min(counts) <= 0:
        return encode(hist)
    total = sum(counts)
    items = sorted(hist.items())
    base = items[0][0]
    span = items[-1][0] - base + 1
    if base < 0 or span > _MAX_SPAN or base + span > _MAX_INDEX + 1:
        return encode(hist)
    # The encoder's choice for one segment with width-1 counts: SAMPLES (a byte an observation)
    # when no larger than PAIRS (2 bytes a bucket) and RUN (a byte a bucket of the span), else
    # RUN when no larger than PAIRS, else PAIRS.
    if total <= 2 * n and total <= span:
        kind, size = 2, total
        head = 3 if size < 16 else 5
        out = bytearray(head + total)
        pos, prev = head, base
        for index, count in items:
            out[pos] = index - prev  # the repeats of a bucket stay 0
            pos += count
            prev = index
    elif span <= 2 * n:
        kind, size = 1, span
        head = 3 if size < 16 else 5
        out = bytearray(head + span)
        for index, count in items:
            out[head + index - base] = count
    else:
        kind, size = 0, n
        head = 3 if size < 16 else 5
        out = bytearray(head + 2 * n)
        prev = base
        for at, (index, count) in enumerate(items, head):
            out[at] = index - prev
            out[at + n] = count
            prev = index
    if head == 3:
        out[0] = kind | size << 4
    else:  # the entry count as a uint16 after the base
        out[0] = kind
        out[3] = size & 255
        out[4] = size >> 8
    out[1] = base & 255
    out[2] = base >> 8
    return bytes(out)


def encode_deltas(hists: Sequence[Mapping[int, int]]) -> list[bytes | bytearray]:
    """``[histogram.encode(h) for h in hists]``: SAMPLES segments in one numpy pass, the rest one by one.

    Each non-empty encoding is a ``bytearray`` (what sqlite3 binds cheapest), an empty one ``b""``.
    Raises ValueError like ``histogram.encode`` (a negative count, an index out of range).
    """
    size = len(hists)
    columns = _columns(hists, size) if np is not None and size else None
    if columns is None:
        return _one_by_one(hists)
    lens, index, count = columns
    i64 = np.int64
    owners = np.flatnonzero(lens)  # histograms with entries, in order
    n = lens[owners]
    # Entries sorted by (histogram, bucket); each histogram's are contiguous, so this only sorts
    # within a histogram.
    order = np.argsort(np.repeat(np.arange(size, dtype=i64), lens) << 17 | index, kind="stable")
    index = index[order]
    count = count[order]
    first = np.cumsum(n) - n
    base = index[first]
    span = index[first + n - 1] - base + 1
    total = np.add.reduceat(count, first)
    # The encoder picks SAMPLES for one segment of one-byte counts when it is no larger than
    # PAIRS (2 bytes a bucket) and RUN (a byte a bucket of the span).
    samples = (
        (np.minimum.reduceat(count, first) >= 1)
        & (np.maximum.reduceat(count, first) < 256)
        & (span <= _MAX_SPAN)
        & (total <= 2 * n)
        & (total <= span)
    )
    head = np.where(total < 16, 3, 5)
    length = np.where(samples, head + total, 0)
    start = np.cumsum(length) - length
    buf = np.zeros(int(length.sum()), dtype=np.uint8)
    at, m, b = start[samples], total[samples], base[samples]
    long = m >= 16  # the entry count as a uint16 after the base
    buf[at] = np.where(long, 2, 2 | m << 4)
    buf[at + 1] = b & 255
    buf[at + 2] = b >> 8
    buf[at[long] + 3] = m[long] & 255
    buf[at[long] + 4] = m[long] >> 8
    # Each entry's delta byte goes after the observations before it in its histogram; the
    # repeats of a bucket are the zero bytes that follow it.
    owner_of = np.repeat(np.arange(len(owners), dtype=i64), n)
    keep = samples[owner_of]
    before = np.cumsum(count) - count
    before -= before[first][owner_of]
    delta = np.diff(index, prepend=0)
    delta[first] = 0
    buf[((start + head)[owner_of] + before)[keep]] = delta[keep]
    raw = bytearray(buf)  # its slices are bytearrays too
    if len(owners) == size and bool(samples.all()):  # the usual slice: every delta one SAMPLES segment
        return [raw[a:z] for a, z in zip(start.tolist(), (start + length).tolist(), strict=True)]
    out: list[bytes | bytearray] = [b""] * size
    for o, a, z, ok in zip(
        owners.tolist(), start.tolist(), (start + length).tolist(), samples.tolist(), strict=True
    ):
        out[o] = raw[a:z] if ok else bytearray(encode_delta(hists[o]))
    return out


def _columns(hists: Sequence[Mapping[int, int]], size: int) -> tuple[Any, Any, Any] | None:
    """(entries of each histogram, their bucket indexes, their counts) as int64 arrays, in dict
    order; None when there are no entries or an index is not an int in 0..65535.

    ``bytes``, ``struct`` and ``bytearray`` take small ints from an iterator in C at about half
    the cost per value of ``np.fromiter``, which converts each through numpy's scalar discovery
    (callgrind, 10k flush_bench deltas in slices of 250: the three columns 43 -> 30 M).
    """
    i64 = np.int64
    try:
        lens = np.frombuffer(bytes(map(len, hists)), dtype=np.uint8).astype(i64)
    except ValueError:  # a histogram of 256 entries or more
        lens = np.fromiter(map(len, hists), dtype=i64, count=size)
    entries = int(lens.sum())
    if not entries:
        return None
    try:
        packed = struct.pack(f"{entries}H", *chain.from_iterable(hists))
    except struct.error:  # an index out of range or not an int: the plain path says why
        return None
    index = np.frombuffer(packed, dtype=np.uint16).astype(i64)
    try:
        count = np.frombuffer(bytearray(chain.from_iterable(map(dict.values, hists))), dtype=np.uint8)
    except (ValueError, TypeError):  # a count of 256 or more (or negative), or not a dict
        try:
            count = np.fromiter(chain.from_iterable(h.values() for h in hists), dtype=i64, count=entries)
        except (OverflowError, TypeError):  # a count past int64 (or not an int)
            return None
    return lens, index, count.astype(i64)


def _one_by_one(hists: Sequence[Mapping[int, int]]) -> list[bytes | bytearray]:
    """``encode_deltas`` without numpy: each histogram through :func:`encode_delta`."""
    return [bytearray(blob) if (blob := encode_delta(h)) else b"" for h in hists]
