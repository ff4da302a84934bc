"""The flush's histogram encoder: a delta of one flush is small, so it is encoded in plain Python.

A delta holds the requests of one series in one flush interval: a handful of buckets, counts
below 256, all within 255 buckets of each other. Such a histogram is one segment of the stored
format (``histogram``'s docstring) with one-byte counts, and :func:`encode_delta` writes it
directly, choosing the segment kind by the encoder's rule; anything else (a wide spread, a count
of 256 or more, a bad index or count) goes to :func:`histogram.encode`. The bytes are always
those of ``histogram.encode`` (property test in tests/test_store_delta_encode.py).

Why not ``histogram_numpy.encode_all``: its fixed cost per call (~0.3 ms of numpy set-up on a slow
core) and its dense bincount over histograms x bucket span make it cost about as much for 10k
deltas of a few observations (`flush_bench.py` deltas: ~21 ms per 10k in chunks of 1000, ~27 ms in
chunks of 250 against ~22 ms here; single-observation deltas ~7 vs ~4 ms), and the flush
encodes on the event loop in slices of a few hundred rows (store/writes.py), where a per-call cost
is paid per slice.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..histogram import encode

__all__ = ["encode_delta"]

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
