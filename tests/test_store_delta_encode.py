"""The flush's delta encoder writes exactly the bytes of histogram.encode, for any histogram."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.store.delta_encode import encode_delta, encode_deltas

# Buckets near a base (one segment, or just past 255 apart), near both ends of the index range;
# counts around the one-byte limit, zero (dropped) and large.
_BASES = st.sampled_from([0, 1, 300, 65535 - 300, 65535])
_OFFSETS = st.one_of(st.integers(0, 20), st.integers(0, 300), st.sampled_from([254, 255, 256, 1000]))
_COUNTS = st.one_of(st.integers(1, 3), st.sampled_from([0, 15, 16, 255, 256, 65535, 70_000, 2**33]))


@st.composite
def deltas(draw: st.DrawFn) -> dict[int, int]:
    """A histogram as a flush delta holds it: bucket index -> count."""
    base = draw(_BASES)
    entries = draw(st.lists(st.tuples(_OFFSETS, _COUNTS), max_size=40))
    return {min(base + offset, 65535): count for offset, count in entries}


@settings(max_examples=500, deadline=None)
@given(deltas())
def test_same_bytes_as_the_reference_encoder(hist: dict[int, int]) -> None:
    assert encode_delta(hist) == histogram.encode(hist)


@settings(max_examples=300, deadline=None)
@given(st.lists(deltas(), max_size=30))
def test_a_slice_at_once_gives_the_same_bytes(hists: list[dict[int, int]]) -> None:
    assert encode_deltas(hists) == [histogram.encode(h) for h in hists]


def test_a_slice_of_usual_deltas_takes_the_vectorised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    hists = [{300 + i: 1, 310 + i: 2, 400 + i: 1} for i in range(50)] + [{}, {7: 1}] * 5
    expected = [histogram.encode(h) for h in hists]
    monkeypatch.setattr("mockforge_analytics_plugin.store.delta_encode.encode_delta", _not_called)
    assert encode_deltas(hists) == expected  # all SAMPLES (or empty): no per-histogram call
    assert encode_deltas(hists[:50]) == expected[:50]  # none empty: sliced in one comprehension


def _not_called(hist: dict[int, int]) -> bytes:
    raise AssertionError(f"plain path taken for {hist}")


@pytest.mark.parametrize(
    "hist",
    [
        {},
        {300: 1},
        {300: 2},
        {300: 255},
        {0: 1, 255: 1},  # one segment, the widest gap
        {0: 1, 256: 1},  # two segments
        dict.fromkeys(range(300, 316), 1),  # 16 observations: a 5-byte header
        {300: 1, 302: 1, 310: 3},  # PAIRS
        dict.fromkeys(range(300, 310), 7),  # RUN
    ],
)
def test_segment_kinds_and_edges(hist: dict[int, int]) -> None:
    assert encode_delta(hist) == histogram.encode(hist)
    assert histogram.decode(encode_delta(hist)) == {i: c for i, c in hist.items() if c}


@pytest.mark.parametrize("hist", [{300: -1}, {70_000: 1}, {-1: 1}, {300: 1, 301: -2}])
def test_bad_input_raises_like_the_reference(hist: dict[int, int]) -> None:
    with pytest.raises(ValueError):
        histogram.encode(hist)
    with pytest.raises(ValueError):
        encode_delta(hist)
    with pytest.raises(ValueError):
        encode_deltas([{1: 1}, hist])


def test_encodings_come_out_as_bytearrays_for_sqlite3() -> None:
    # sqlite3 binds a bytearray directly; bytes go through its adapter lookup first (slow on 3.11).
    usual = [{300: 1, 310: 2}, {}, {7: 1}]
    plain = [{0: 1, 256: 1}, {300: 70_000}]  # two segments, a wide count: one by one
    for hists in (usual, plain, [{}, {}], [usual[0], plain[1]]):
        blobs = encode_deltas(hists)
        assert blobs == [histogram.encode(h) for h in hists]
        assert [type(b) for b in blobs] == [bytearray if h else bytes for h in hists]


def test_wide_counts_and_other_mappings_stay_on_the_vectorised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counts go through bytes (0..255) with np.fromiter as the fallback; both must stay vectorised.
    usual = [{300 + i: 1, 310 + i: 2} for i in range(20)]
    wide = {400: 300}  # a count past a byte: RUN, not SAMPLES, so encode_delta does it
    calls: list[dict[int, int]] = []

    def spy(hist: dict[int, int]) -> bytes:
        calls.append(dict(hist))
        return histogram.encode(hist)

    monkeypatch.setattr("mockforge_analytics_plugin.store.delta_encode.encode_delta", spy)
    assert encode_deltas([*usual, wide]) == [histogram.encode(h) for h in [*usual, wide]]
    assert calls == [wide]
    proxies = [MappingProxyType(h) for h in usual]
    assert encode_deltas(proxies) == [histogram.encode(h) for h in usual]
    assert calls == [wide]
