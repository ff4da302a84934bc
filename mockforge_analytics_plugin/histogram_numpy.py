"""Histogram blobs by the thousand with numpy: the query layer's reader, the flush's encoder.

Split from ``histogram`` (the format and the pure-Python codec) because it is long. ``arrays``
(re-exported as ``histogram.arrays``) decodes many blobs into entry arrays for the queries;
``encode_all`` encodes every delta of a flush and ``compact`` rewrites closed minute rows
(store/compaction.py), both byte-identical to ``histogram.encode``. numpy is imported here once,
at import time (not in the first flush); without it the two writers fall back to the pure-Python
codec and ``arrays`` raises ImportError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, cast

from .histogram import (
    _BUCKET_VALUES,
    _MAX_GAP,
    _MAX_INDEX,
    _MAX_N,
    _WIDTHS,
    PAIRS,
    RUN,
    SAMPLES,
    bucket_value,
    decode,
    encode,
    quantiles,
)

np: Any
try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is a dependency; the writers still work without
    np = None

__all__ = ["arrays", "compact", "encode_all", "encode_many", "quantiles_many"]


def arrays(blobs: Sequence[bytes | None]) -> tuple[Any, Any, Any]:
    """Decode many blobs at once for numpy: (blob ordinal, bucket index, count) int64 arrays.

    One entry per stored entry, in no particular order (a SAMPLES observation has count 1, RUN
    buckets may have count 0, an index may repeat): made for ``numpy.bincount``, which sums them.
    No Python loop per blob or per segment: the segment headers are read as arrays, one round
    per segment position (the k-th segment of every blob that has one), so a concatenated blob
    (an open minute row holds one segment per flush) costs a few array operations per round
    instead of a Python step per segment; bodies are then gathered by kind and count width.
    Requires numpy.
    """
    if np is None:
        raise ImportError("histogram.arrays needs numpy")
    i64 = np.int64
    empty = np.zeros(0, dtype=i64)
    if not blobs:
        return empty, empty, empty
    joined = cast("Sequence[bytes]", blobs) if all(blobs) else [b if b else b"" for b in blobs]
    lens = np.fromiter(map(len, joined), dtype=i64, count=len(joined))
    buf = np.frombuffer(b"".join(joined), dtype=np.uint8)
    if not len(buf):
        return empty, empty, empty
    own = np.flatnonzero(lens)
    start = (np.cumsum(lens) - lens)[own]
    seg_own, key, base, first_byte, n = _segment_table(buf, own, start, start + lens[own])
    if len(seg_own) == len(own) and len(key):
        k0 = int(key[0])
        if k0 & 3 != PAIRS and bool((key == k0).all()):
            # Every blob is one SAMPLES (or one RUN) segment of one count width: the bodies are
            # the buffer without its headers, in order, so one mask replaces the gathers.
            keep = np.ones(len(buf), dtype=bool)
            keep[start] = False
            keep[start + 1] = False
            keep[start + 2] = False
            long = first_byte - start == 5  # headers with a uint16 entry count
            keep[start[long] + 3] = False
            keep[start[long] + 4] = False
            body_bytes = buf[keep]
            g_first = np.cumsum(n) - n
            total = int(n.sum())
            owner = np.repeat(own, n)
            if k0 & 3 == RUN:
                w = _WIDTHS[k0 >> 2]
                local = np.arange(total, dtype=i64) - np.repeat(g_first, n)
                counts = body_bytes.view(np.dtype(f"<u{w}")).astype(i64)
                return owner, np.repeat(base, n) + local, counts
            cs = np.cumsum(body_bytes, dtype=i64)
            before = np.where(g_first > 0, cs[np.maximum(g_first - 1, 0)], 0)
            return owner, cs - np.repeat(before - base, n), np.ones(total, dtype=i64)
    # One output array each, written group by group (no concatenation pass at the end).
    size_out = int(n.sum())
    owner = np.empty(size_out, dtype=i64)
    index = np.empty(size_out, dtype=i64)
    count = np.empty(size_out, dtype=i64)
    pos = 0
    for k in np.unique(key).tolist():
        m = key == k
        g_n = n[m]
        g_first = np.cumsum(g_n) - g_n  # where each segment's entries start in the group
        total = int(g_n.sum())
        sl = slice(pos, pos + total)
        pos += total
        g_start = first_byte[m]
        g_base = base[m]
        owner[sl] = np.repeat(seg_own[m], g_n)
        w = _WIDTHS[k >> 2]
        if k & 3 == RUN:  # bucket base + entry number within its segment
            np.add(np.arange(total, dtype=i64), np.repeat(g_base - g_first, g_n), out=index[sl])
            count[sl] = _gather_counts(buf, g_start, g_n, w)
            continue
        where = np.arange(total, dtype=i64)
        where += np.repeat(g_start - g_first, g_n)  # each delta byte's place in buf
        idx = index[sl]
        np.cumsum(buf[where], dtype=i64, out=idx)
        before = np.where(g_first > 0, idx[np.maximum(g_first - 1, 0)], 0)
        idx += np.repeat(g_base - before, g_n)  # the running sum restarts at each segment's base
        if k & 3 == SAMPLES:
            count[sl] = 1
        else:
            count[sl] = _gather_counts(buf, g_start + g_n, g_n, w)
    return owner, index, count


def _step_table() -> Any:
    """Segment size (header + body) by header byte: 0 for a header whose entry count follows it
    (uint16), -1 for an unknown kind."""
    step = np.zeros(256, dtype=np.int64)
    for h in range(256):
        n, kind, width = h >> 4, h & 3, _WIDTHS[h >> 2 & 3]
        if kind == 3:
            step[h] = -1
        elif n:
            step[h] = 3 + (n if kind == SAMPLES else n * width if kind == RUN else n + n * width)
    return step


_STEP = _step_table() if np is not None else None
_VALUES = np.asarray(_BUCKET_VALUES, dtype=np.float64) if np is not None else None
_DENSE_KEYS = 1 << 22  # (histograms x bucket span) cells summed with one bincount (32 MB of float64)


def _segment_table(buf: Any, own: Any, pos: Any, end: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Every segment of the blobs at buf[pos:end]: (owner, kind | width code << 2, base, first
    body byte, entry count) int64 arrays.

    The walk takes one round per segment position (the k-th segment of every blob that has one)
    and does as little as it can per round: a table lookup gives a segment's size from its header
    byte; the headers are decoded afterwards, all at once. Raises ValueError for a segment that
    runs past its blob or has an unknown kind.
    """
    i64 = np.int64
    last = len(buf) - 1
    owners: list[Any] = []
    starts: list[Any] = []
    while len(pos):
        step = _STEP[buf[pos]]
        if int(step.min()) <= 0:
            if int(step.min()) < 0:
                raise ValueError("malformed histogram blob: unknown segment kind")
            long = step == 0  # the entry count is a uint16 after the base
            at = pos[long]
            h = buf[at].astype(i64)
            n = buf[np.minimum(at + 3, last)].astype(i64) | buf[np.minimum(at + 4, last)].astype(i64) << 8
            width = np.asarray(_WIDTHS, dtype=i64)[h >> 2 & 3]
            kind = h & 3
            step[long] = 5 + np.where(kind == SAMPLES, n, np.where(kind == RUN, n * width, n + n * width))
        nxt = pos + step
        if bool((nxt > end).any()):
            raise ValueError("malformed histogram blob: a segment runs past the blob")
        owners.append(own)
        starts.append(pos)
        more = nxt < end
        if bool(more.all()):
            pos = nxt
        else:
            own, pos, end = own[more], nxt[more], end[more]
    if not owners:
        empty = np.zeros(0, dtype=i64)
        return empty, empty, empty, empty, empty
    own = owners[0] if len(owners) == 1 else np.concatenate(owners)
    at = starts[0] if len(starts) == 1 else np.concatenate(starts)
    h = buf[at].astype(i64)
    n = h >> 4
    long = n == 0
    if bool(long.any()):
        n[long] = buf[at[long] + 3].astype(i64) | buf[at[long] + 4].astype(i64) << 8
    base = buf[at + 1].astype(i64) | buf[at + 2].astype(i64) << 8
    return own, h & 15, base, at + np.where(long, 5, 3), n


def _gather_counts(buf: Any, starts: Any, n: Any, width: int) -> Any:
    """The little-endian counts of `width` bytes, n[i] of them at starts[i], as one int64 array."""
    nbytes = n * width
    first = np.cumsum(nbytes) - nbytes
    total = int(nbytes.sum())
    raw = buf[np.repeat(starts, nbytes) + np.arange(total, dtype=np.int64) - np.repeat(first, nbytes)]
    return raw.view(np.dtype(f"<u{width}")).astype(np.int64)


def compact(blobs: Sequence[bytes | None]) -> list[bytes]:
    """``[encode(decode(b)) for b in blobs]`` without a Python step per blob or segment.

    What the store's compaction runs over the closed minute rows that took several flushes (one
    segment each): the same bytes as :func:`histogram.encode` of the summed histogram, so a
    compacted row is exactly what a single write of all its observations would have stored.
    Requires numpy.
    """
    if np is None:
        return [encode(decode(b)) for b in blobs]
    owner, index, count = arrays(blobs)
    return encode_many(owner, index, count, len(blobs))


def encode_all(hists: Sequence[Mapping[int, int]]) -> list[bytes]:
    """``[encode(h) for h in hists]`` in one vectorised pass (the flush encodes every delta).

    Raises ValueError like :func:`histogram.encode` (a negative count, an index out of range).
    """
    if np is None:
        return [encode(h) for h in hists]
    lens = np.fromiter(map(len, hists), dtype=np.int64, count=len(hists))
    total = int(lens.sum())
    index = np.fromiter(chain.from_iterable(hists), dtype=np.int64, count=total)
    try:
        count = np.fromiter(chain.from_iterable(h.values() for h in hists), dtype=np.int64, count=total)
    except OverflowError:  # a count past int64: the pure-Python encoder says what is wrong
        return [encode(h) for h in hists]
    return encode_many(np.repeat(np.arange(len(hists), dtype=np.int64), lens), index, count, len(hists))


def _summed(owner: Any, index: Any, count: Any, size: int) -> tuple[Any, Any, Any]:
    """Sum repeated (owner, index) entries: (owner, index, count) sorted by owner then index,
    zero counts dropped. One bincount over a dense key space when it is small (a minute's
    buckets span a few hundred), else a sort."""
    i64 = np.int64
    lo = int(index.min()) if len(index) else 0
    span = int(index.max()) - lo + 1 if len(index) else 1
    if len(count) and size * span <= _DENSE_KEYS and int(count.max()) < 2**32 and len(count) < 2**20:
        # float64 weights are exact here: every sum stays below 2**52.
        dense = np.bincount(owner * span + (index - lo), weights=count, minlength=size * span)
        key = np.flatnonzero(dense)
        return key // span, key % span + lo, dense[key].astype(i64)
    key = owner * (_MAX_INDEX + 1) + index
    order = np.argsort(key, kind="stable")
    key = key[order]
    if not len(key):
        return key, key, count[:0]
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    summed = np.add.reduceat(count[order], first)
    key = key[first]
    nonzero = summed > 0
    key, summed = key[nonzero], summed[nonzero]
    return key // (_MAX_INDEX + 1), key % (_MAX_INDEX + 1), summed


def quantiles_many(blobs: Sequence[bytes | None], qs: Sequence[float]) -> list[list[float | None]]:
    """``[histogram.quantiles(decode(b), qs) for b in blobs]``, vectorised (same rank rule,
    same floats): what an export of minute rows (which store no percentiles) computes per row."""
    if np is None:
        return [quantiles(decode(b), qs) for b in blobs]
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
    size = len(blobs)
    owner, index, count = arrays(blobs)
    e_owner, e_index, summed = _summed(owner, index, count, size)
    if not len(summed):
        return [[None] * len(qs) for _ in range(size)]
    cum = np.cumsum(summed)
    first = np.searchsorted(e_owner, np.arange(size), side="left")
    last = np.searchsorted(e_owner, np.arange(size), side="right") - 1  # each owner's last entry
    owners = np.flatnonzero(last >= first)
    first, last = first[owners], last[owners]
    before = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0)
    total = cum[last] - before
    values = np.empty((len(owners), len(qs)), dtype=np.float64)
    for k, q in enumerate(qs):
        # The first bucket whose running count exceeds q * (total - 1): for an integer running
        # count that is "exceeds floor(q * (total - 1))", found in exact integer arithmetic.
        rank = np.floor(q * (total - 1).astype(np.float64)).astype(np.int64)
        bucket = e_index[np.minimum(np.searchsorted(cum, before + rank, side="right"), last)]
        values[:, k] = _VALUES[np.minimum(bucket, len(_VALUES) - 1)]
        for row in np.flatnonzero(bucket >= len(_VALUES)).tolist():  # past the table: rare
            values[row, k] = bucket_value(int(bucket[row]))
    rows: list[list[float | None]] = values.tolist()
    if len(owners) == size:
        return rows
    out: list[list[float | None]] = [[None] * len(qs) for _ in range(size)]
    for o, row in zip(owners.tolist(), rows, strict=True):
        out[o] = row
    return out


def encode_many(owner: Any, index: Any, count: Any, size: int) -> list[bytes]:
    """Encode ``size`` histograms given as (owner, bucket index, count) entries, like
    :func:`histogram.encode` of each owner's summed counts (b"" for an owner with none).

    Entries may come in any order and repeat; zero counts are dropped. Segments are chosen by
    the encoder's rules (split where two buckets are more than 255 apart; per segment the
    smallest of SAMPLES, RUN and PAIRS, the narrowest count width).
    """
    i64 = np.int64
    owner = np.asarray(owner, dtype=i64)
    index = np.asarray(index, dtype=i64)
    count = np.asarray(count, dtype=i64)
    if len(index) and (int(index.min()) < 0 or int(index.max()) > _MAX_INDEX):
        raise ValueError("bucket index out of range")
    if len(count) and int(count.min()) < 0:
        raise ValueError("negative histogram count")
    e_owner, e_index, summed = _summed(owner, index, count, size)
    out = [b""] * size
    if not len(summed):
        return out
    # Clusters: a new one where the owner changes or the gap is over 255.
    new = np.ones(len(summed), dtype=bool)
    new[1:] = (e_owner[1:] != e_owner[:-1]) | (e_index[1:] - e_index[:-1] > _MAX_GAP)
    c_first = np.flatnonzero(new)
    c_n = np.diff(np.append(c_first, len(summed)))
    c_owner = e_owner[c_first]
    c_base = e_index[c_first]
    c_span = e_index[c_first + c_n - 1] - c_base + 1
    c_total = np.add.reduceat(summed, c_first)
    c_max = np.maximum.reduceat(summed, c_first)
    if int(c_max.max()) >= 2**32 or int(c_n.max()) > _MAX_N:
        # Counts of 8 bytes (whose sums could pass int64) or a segment of 65536 buckets: left to
        # the pure-Python encoder, which splits such a segment.
        odd = np.unique(c_owner[(c_max >= 2**32) | (c_n > _MAX_N)]).tolist()
        keep = ~np.isin(e_owner, odd)
        for o in odd:
            mask = e_owner == o
            out[o] = encode(dict(zip(e_index[mask].tolist(), summed[mask].tolist(), strict=True)))
        if not bool(keep.any()):
            return out
        rest = encode_many(e_owner[keep], e_index[keep], summed[keep], size)
        return [a or b for a, b in zip(out, rest, strict=True)]
    c_wcode = (c_max >= 0x100).astype(i64) + (c_max >= 0x10000) + (c_max >= 0x100000000)
    c_width = np.asarray(_WIDTHS, dtype=i64)[c_wcode]
    size_pairs = c_n * (1 + c_width)
    size_run = c_span * c_width
    samples = (c_total <= size_pairs) & (c_total <= size_run) & (c_total <= _MAX_N)
    run = ~samples & (size_run <= size_pairs) & (c_span <= _MAX_N)
    c_kind = np.where(samples, SAMPLES, np.where(run, RUN, PAIRS))
    c_wcode = np.where(samples, 0, c_wcode)
    c_m = np.where(samples, c_total, np.where(run, c_span, c_n))  # the header's entry count
    c_head = np.where(c_m < 16, 3, 5)
    c_body = np.where(samples, c_total, np.where(run, size_run, size_pairs))
    c_size = c_head + c_body
    c_at = np.cumsum(c_size) - c_size  # where each segment starts in the output
    buf = np.zeros(int(c_size.sum()), dtype=np.uint8)
    buf[c_at] = c_kind | c_wcode << 2 | np.where(c_m < 16, c_m << 4, 0)
    buf[c_at + 1] = c_base & 0xFF
    buf[c_at + 2] = c_base >> 8
    long = c_m >= 16
    buf[c_at[long] + 3] = c_m[long] & 0xFF
    buf[c_at[long] + 4] = c_m[long] >> 8
    body = c_at + c_head
    # Each entry's cluster and its place within it.
    e_cluster = np.repeat(np.arange(len(c_first), dtype=i64), c_n)
    e_local = np.arange(len(summed), dtype=i64) - np.repeat(c_first, c_n)
    e_kind = c_kind[e_cluster]
    e_prev = np.where(e_local > 0, np.roll(e_index, 1), e_index)  # the first delta of a cluster is 0
    # SAMPLES: one delta byte per observation (the repeats of a bucket are deltas of 0).
    m = e_kind == SAMPLES
    if bool(m.any()):
        s_count = summed[m]
        s_place = body[e_cluster[m]] + np.cumsum(s_count) - s_count
        s_place -= np.repeat(np.cumsum(c_total[samples]) - c_total[samples], c_n[samples])
        buf[s_place] = e_index[m] - e_prev[m]
    # PAIRS: n delta bytes, then n counts.
    m = e_kind == PAIRS
    if bool(m.any()):
        buf[body[e_cluster[m]] + e_local[m]] = e_index[m] - e_prev[m]
    # RUN and PAIRS counts, little-endian, by count width.
    for wcode, w in enumerate(_WIDTHS):
        m = (e_kind != SAMPLES) & (c_wcode[e_cluster] == wcode)
        if not bool(m.any()):
            continue
        cl = e_cluster[m]
        offset = np.where(e_kind[m] == RUN, (e_index[m] - c_base[cl]) * w, c_n[cl] + e_local[m] * w)
        place = body[cl] + offset
        raw = summed[m].astype(f"<u{w}").view(np.uint8).reshape(-1, w)
        buf[(place[:, None] + np.arange(w, dtype=i64)).ravel()] = raw.ravel()
    # Each owner's segments are consecutive: slice the bytes once per owner.
    o_first = np.flatnonzero(np.concatenate(([True], c_owner[1:] != c_owner[:-1])))
    o_start = c_at[o_first]
    o_end = np.append(o_start[1:], len(buf))
    raw_bytes = buf.tobytes()
    for o, a, b in zip(c_owner[o_first].tolist(), o_start.tolist(), o_end.tolist(), strict=True):
        out[o] = raw_bytes[a:b]
    return out
