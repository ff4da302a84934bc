"""Histogram blob format 2: round trips, concatenation = merge, sizes, the numpy reader."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockforge_analytics_plugin import histogram

HISTS = st.dictionaries(
    st.one_of(st.integers(0, 0xFFFF), st.integers(300, 420)),
    st.one_of(st.integers(1, 3), st.integers(1, 2**40)),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(HISTS, HISTS)
def test_round_trip_and_concatenation_is_merge(a: dict[int, int], b: dict[int, int]) -> None:
    ba, bb = histogram.encode(a), histogram.encode(b)
    assert histogram.decode(ba) == a
    assert histogram.merge_into({}, ba) == a
    total = dict(a)
    for index, count in b.items():
        total[index] = total.get(index, 0) + count
    assert histogram.decode(ba + bb) == total
    assert histogram.merge_blobs([ba, None, bb, b""]) == total
    assert histogram.merge_into(histogram.merge_into({}, ba), bb) == total


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 3000), st.integers(1, 10_000), max_size=60))
def test_encode_with_quantiles_matches(hist: dict[int, int]) -> None:
    blob, p50, p95, p99 = histogram.encode_with_quantiles(hist)
    assert blob == histogram.encode(hist)
    assert [p50, p95, p99] == (histogram.quantiles(hist, (0.5, 0.95, 0.99)))


def test_empty_and_zero_counts() -> None:
    assert histogram.encode({}) == b""
    assert histogram.decode(b"") == {} and histogram.decode(None) == {}
    assert histogram.decode(histogram.encode({5: 0, 7: 2})) == {7: 2}  # empty buckets are dropped
    assert histogram.encode_with_quantiles({}) == (b"", None, None, None)
    with pytest.raises(ValueError):
        histogram.encode({5: -1})
    with pytest.raises(ValueError):
        histogram.encode({0x10000: 1})


def test_malformed_blob_is_a_value_error() -> None:
    blob = histogram.encode({400: 300, 401: 2, 700: 9})
    for bad in (blob[:-1], blob + b"\x03"):
        with pytest.raises(ValueError):
            histogram.decode(bad)
    pytest.importorskip("numpy")
    for bad in (blob[:-1], blob + b"\x03", b"\x03"):
        with pytest.raises(ValueError):
            histogram.arrays([histogram.encode({1: 1}), bad])


def test_sizes() -> None:
    # A sparse minute: about a byte per observation plus a 3-byte header.
    assert len(histogram.encode({400: 1, 410: 1, 420: 2, 433: 1})) == 3 + 5
    # A dense run of small counts: a byte per bucket.
    dense = {i: 1 + i % 7 for i in range(300, 460)}
    assert len(histogram.encode(dense)) == 5 + 160
    # Big counts take the narrowest width that holds them.
    assert len(histogram.encode({300: 70_000, 302: 5})) == 3 + 2 + 2 * 4
    # Far apart buckets start a new segment instead of failing.
    far = {1: 1, 60_000: 1}
    assert histogram.decode(histogram.encode(far)) == far


def test_log_normal_blobs_are_at_least_three_times_smaller_than_format_1() -> None:
    rng = random.Random(7)
    for observations in (8, 60, 500, 30_000):
        hist: dict[int, int] = {}
        for _ in range(observations):
            i = histogram.bucket_index(rng.lognormvariate(2.9957, 0.8))
            hist[i] = hist.get(i, 0) + 1
        assert len(histogram.encode(hist)) * 2.5 <= 6 * len(hist), observations


@settings(max_examples=150, deadline=None)
@given(st.lists(HISTS, max_size=6))
def test_arrays_sum_to_the_decoded_histograms(hists: list[dict[int, int]]) -> None:
    np = pytest.importorskip("numpy")
    blobs = [histogram.encode(h) for h in hists]
    if len(blobs) > 1:
        blobs[0] += blobs[-1]  # a concatenated blob is read like any other
        hists[0] = histogram.decode(blobs[0])
    owner, index, count = histogram.arrays([*blobs, None])  # None and b"" hold nothing
    assert owner.dtype == index.dtype == count.dtype == np.int64
    for ordinal, hist in enumerate(hists):
        mask = owner == ordinal
        got: dict[int, int] = {}
        for i, c in zip(index[mask].tolist(), count[mask].tolist(), strict=True):
            got[i] = got.get(i, 0) + c
        assert {i: c for i, c in got.items() if c} == hist


@pytest.mark.parametrize("observations", [1, 8, 40, 3000])
def test_arrays_of_blobs_of_one_kind(observations: int) -> None:
    """Store-written blobs are one segment each, often all of one kind: the one-mask path."""
    pytest.importorskip("numpy")
    rng = random.Random(observations)
    hists = []
    for _ in range(30):
        hist: dict[int, int] = {}
        for _ in range(observations):
            i = histogram.bucket_index(rng.lognormvariate(2.9957, 0.5))
            hist[i] = hist.get(i, 0) + 1
        hists.append(hist)
    blobs = [histogram.encode(h) for h in hists]
    assert len({b[0] & 15 for b in blobs}) == 1  # one kind and count width
    owner, index, count = histogram.arrays(blobs)
    for ordinal, hist in enumerate(hists):
        got: dict[int, int] = {}
        mask = owner == ordinal
        for i, c in zip(index[mask].tolist(), count[mask].tolist(), strict=True):
            got[i] = got.get(i, 0) + c
        assert {i: c for i, c in got.items() if c} == hist


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(HISTS, max_size=5), max_size=8))
def test_compact_equals_encode_of_the_decoded_sum(rows: list[list[dict[int, int]]]) -> None:
    """The vectorised compaction writes exactly the bytes encode() would for the summed histogram."""
    pytest.importorskip("numpy")
    from mockforge_analytics_plugin.histogram_numpy import compact, encode_all

    blobs = [b"".join(histogram.encode(h) for h in row) for row in rows]
    assert compact(blobs) == [histogram.encode(histogram.decode(b)) for b in blobs]
    flat = [h for row in rows for h in row]
    assert encode_all(flat) == [histogram.encode(h) for h in flat]


def test_encode_all_refuses_what_encode_refuses() -> None:
    pytest.importorskip("numpy")
    from mockforge_analytics_plugin.histogram_numpy import encode_all

    for bad in ({5: -1}, {0x10000: 1}, {-1: 1}):
        with pytest.raises(ValueError):
            encode_all([{1: 1}, bad])
    with pytest.raises(ValueError):
        encode_all([{1: 2**64}])  # past int64: the pure-Python encoder names it
    assert encode_all([{}, {7: 0}]) == [b"", b""]
    assert encode_all([{1: 2**40, 3: 1}]) == [histogram.encode({1: 2**40, 3: 1})]  # 8-byte counts


def test_arrays_of_many_segment_blobs() -> None:
    """An open minute row holds one segment per flush: read without a Python step per segment."""
    pytest.importorskip("numpy")
    rng = random.Random(5)
    rows = []
    for r in range(40):
        parts = [
            {
                histogram.bucket_index(rng.lognormvariate(2.5, 0.8)): rng.randint(1, 3)
                for _ in range(rng.randint(1, 8))
            }
            for _ in range(r % 7 * 10 + 1)
        ]
        rows.append(parts)
    blobs = [b"".join(histogram.encode(p) for p in parts) for parts in rows]
    owner, index, count = histogram.arrays([None, *blobs])
    for ordinal, blob in enumerate(blobs, start=1):
        got: dict[int, int] = {}
        mask = owner == ordinal
        for i, c in zip(index[mask].tolist(), count[mask].tolist(), strict=True):
            got[i] = got.get(i, 0) + c
        assert got == histogram.decode(blob)
    good = histogram.encode({400: 1}) * 5
    for bad in (good + b"\x13", good + histogram.encode({400: 300})[:-1], good + b"\x03\x00\x00"):
        with pytest.raises(ValueError):
            histogram.arrays([good, bad])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.dictionaries(
                st.integers(0, 30_000), st.one_of(st.integers(0, 3), st.integers(1, 2**40)), max_size=40
            ),
            max_size=3,
        ),
        max_size=8,
    ),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
)
def test_quantiles_many_equals_quantiles(rows: list[list[dict[int, int]]], qs: list[float]) -> None:
    """The export's vectorised per-row percentiles: the same floats as histogram.quantiles."""
    pytest.importorskip("numpy")
    from mockforge_analytics_plugin.histogram_numpy import quantiles_many

    blobs = [b"".join(histogram.encode(h) for h in row) or None for row in rows]
    qs = [*qs, 0.5, 0.95, 0.99, 0.0, 1.0]
    assert quantiles_many(blobs, qs) == [histogram.quantiles(histogram.decode(b), qs) for b in blobs]
