"""Vectorised reading of many histogram blobs for numpy (the query layer's fast merge path).

Split from ``histogram`` (the format and the pure-Python codec) because it is long and only the
query layer needs it; ``histogram.arrays`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from .histogram import _WIDTHS, PAIRS, RUN, SAMPLES

__all__ = ["arrays"]


def arrays(blobs: Sequence[bytes | None]) -> tuple[Any, Any, Any]:
    """Decode many blobs at once for numpy: (blob ordinal, bucket index, count) int64 arrays.

    One entry per stored entry, in no particular order (a SAMPLES observation has count 1, RUN
    buckets may have count 0, an index may repeat): made for ``numpy.bincount``, which sums them.
    Blobs of one segment (what the store writes) are decoded without a Python loop: their
    headers are read as arrays, their bodies gathered by kind and count width. Concatenated
    blobs take a Python walk over their segment headers. Requires numpy.
    """
    import numpy as np

    i64 = np.int64
    empty = np.zeros(0, dtype=i64)
    if not blobs:
        return empty, empty, empty
    joined = cast("Sequence[bytes]", blobs) if all(blobs) else [b if b else b"" for b in blobs]
    lens = np.fromiter(map(len, joined), dtype=i64, count=len(joined))
    buf = np.frombuffer(b"".join(joined), dtype=np.uint8)
    if not len(buf):
        return empty, empty, empty
    last = len(buf) - 1
    own = np.flatnonzero(lens)
    size = lens[own]
    start = (np.cumsum(lens) - lens)[own]

    def byte(offset: int) -> Any:
        return buf[np.minimum(start + offset, last)].astype(i64)

    h = byte(0)
    n = h >> 4
    long = n == 0
    n = np.where(long, byte(3) | byte(4) << 8, n)
    head = np.where(long, 5, 3)
    kind = h & 3
    wcode = h >> 2 & 3
    width = np.asarray(_WIDTHS, dtype=i64)[wcode]
    body = np.where(kind == SAMPLES, n, np.where(kind == RUN, n * width, n + n * width))
    single = (head + body == size) & (kind != 3) & (size >= head)
    owners_out: list[Any] = []
    index_out: list[Any] = []
    count_out: list[Any] = []
    if not single.all():  # concatenated (or malformed) blobs: walk their segments
        rest = own[~single].tolist()
        o, i, c = _arrays_walk([joined[k] for k in rest], rest)
        owners_out.append(o)
        index_out.append(i)
        count_out.append(c)
    if owners_out:
        own, n, kind, wcode = own[single], n[single], kind[single], wcode[single]
        base = (byte(1) | byte(2) << 8)[single]
        first_byte = (start + head)[single]
        start, head = start[single], head[single]
    else:
        base = byte(1) | byte(2) << 8
        first_byte = start + head
    key = kind | wcode << 2
    k0 = int(key[0]) if len(key) else 0
    if not owners_out and k0 & 3 != PAIRS and len(key) and bool((key == k0).all()):
        # Every blob is one SAMPLES (or one RUN) segment of one count width: the bodies are the
        # buffer without its headers, in order, so one mask replaces the per-entry gathers.
        keep = np.ones(len(buf), dtype=bool)
        keep[start] = False
        keep[start + 1] = False
        keep[start + 2] = False
        if bool(long.any()):
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
    walked = sum(len(o) for o in owners_out)
    size_out = walked + int(n.sum())
    owner = np.empty(size_out, dtype=i64)
    index = np.empty(size_out, dtype=i64)
    count = np.empty(size_out, dtype=i64)
    if walked:
        owner[:walked] = owners_out[0]
        index[:walked] = index_out[0]
        count[:walked] = count_out[0]
    pos = walked
    for k in np.unique(key).tolist():
        m = key == k
        g_n = n[m]
        g_first = np.cumsum(g_n) - g_n  # where each segment's entries start in the group
        total = int(g_n.sum())
        sl = slice(pos, pos + total)
        pos += total
        g_start = first_byte[m]
        g_base = base[m]
        owner[sl] = np.repeat(own[m], g_n)
        w = _WIDTHS[k >> 2]
        if k & 3 == RUN:  # bucket base + entry number within its segment
            np.add(np.arange(total, dtype=i64), np.repeat(g_base - g_first, g_n), out=index[sl])
            count[sl] = _gather_counts(np, buf, g_start, g_n, w)
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
            count[sl] = _gather_counts(np, buf, g_start + g_n, g_n, w)
    return owner, index, count


def _gather_counts(np: Any, buf: Any, starts: Any, n: Any, width: int) -> Any:
    """The little-endian counts of `width` bytes, n[i] of them at starts[i], as one int64 array."""
    nbytes = n * width
    first = np.cumsum(nbytes) - nbytes
    total = int(nbytes.sum())
    raw = buf[np.repeat(starts, nbytes) + np.arange(total, dtype=np.int64) - np.repeat(first, nbytes)]
    return raw.view(np.dtype(f"<u{width}")).astype(np.int64)


def _arrays_walk(blobs: Sequence[bytes], ordinals: Sequence[int]) -> tuple[Any, Any, Any]:
    """:func:`arrays` for blobs of any number of segments, walking the headers in Python."""
    import numpy as np

    # (kind | width code << 2) -> [owners, bases, lengths, delta bodies, count bodies]
    groups: dict[int, tuple[list[int], list[int], list[int], list[bytes], list[bytes]]] = {}
    for ordinal, blob in zip(ordinals, blobs, strict=True):
        if not blob:
            continue
        if type(blob) is not bytes:
            blob = bytes(blob)
        end = len(blob)
        pos = 0
        while pos < end:
            if pos + 3 > end or (blob[pos] < 16 and pos + 5 > end):
                raise ValueError(f"malformed histogram blob at byte {pos} of {end}")
            h = blob[pos]
            n = h >> 4
            if n:
                body = pos + 3
            else:
                n = blob[pos + 3] | blob[pos + 4] << 8
                body = pos + 5
            key = h & 15
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [], [], [], [])
            group[0].append(ordinal)
            group[1].append(blob[pos + 1] | blob[pos + 2] << 8)
            group[2].append(n)
            kind = h & 3
            if kind == SAMPLES:
                pos = body + n
                group[3].append(blob[body:pos])
            else:
                if kind == PAIRS:
                    group[3].append(blob[body : body + n])
                    body += n
                elif kind != RUN:
                    raise ValueError(f"malformed histogram blob at byte {pos} of {end}")
                pos = body + n * _WIDTHS[h >> 2 & 3]
                group[4].append(blob[body:pos])
            if pos > end:
                raise ValueError(f"malformed histogram blob at byte {pos} of {end}")
    owners_out: list[Any] = []
    index_out: list[Any] = []
    count_out: list[Any] = []
    for key, (owners, bases, lengths, deltas, counts) in groups.items():
        kind, wcode = key & 3, key >> 2
        lens = np.asarray(lengths, dtype=np.int64)
        base = np.asarray(bases, dtype=np.int64)
        total = int(lens.sum())
        owners_out.append(np.repeat(np.asarray(owners, dtype=np.int64), lens))
        if kind == RUN:
            first = np.cumsum(lens) - lens
            index_out.append(np.arange(total, dtype=np.int64) + np.repeat(base - first, lens))
        else:  # index = base + running sum of the deltas within the segment
            cs = np.cumsum(np.frombuffer(b"".join(deltas), dtype=np.uint8), dtype=np.int64)
            before = np.cumsum(lens) - lens - 1
            offset = np.where(before >= 0, cs[np.maximum(before, 0)], 0)
            index_out.append(cs + np.repeat(base - offset, lens))
        if kind == SAMPLES:
            count_out.append(np.ones(total, dtype=np.int64))
        else:
            dtype = np.dtype("<u" + str(_WIDTHS[wcode]))
            count_out.append(np.frombuffer(b"".join(counts), dtype=dtype).astype(np.int64))
    if not owners_out:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if len(owners_out) == 1:
        return owners_out[0], index_out[0], count_out[0]
    return np.concatenate(owners_out), np.concatenate(index_out), np.concatenate(count_out)


