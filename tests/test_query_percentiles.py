"""query.percentiles_by_key: numpy (dense and key-by-key) and pure Python give identical quantiles."""

from __future__ import annotations

import random

import pytest

from mockforge_analytics_plugin import histogram, query


def rows(seed=3, n=400):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hist = {}
        for _ in range(rng.randrange(1, 30)):
            b = histogram.bucket_index(rng.lognormvariate(2.0, 1.2))
            hist[b] = hist.get(b, 0) + rng.randrange(1, 5)
        out.append((i % 17 * 60, i % 5, histogram.encode(hist)))
    return out


async def chunks(data):
    yield data[:150]
    yield data[150:]


def reference(data):
    merged = {}
    for bucket, sid, blob in data:
        histogram.merge_into(merged.setdefault((bucket, sid % 3), {}), blob)
    return {k: histogram.quantiles(h, query.QUANTILES) for k, h in merged.items()}


@pytest.mark.parametrize(("use_numpy", "dense_cells"), [(False, 0), (True, 4_000_000), (True, 10)])
async def test_all_merge_paths_agree(monkeypatch, use_numpy, dense_cells):
    if use_numpy and query._np is None:
        pytest.skip("numpy not installed")
    monkeypatch.setattr(query, "USE_NUMPY", use_numpy)
    monkeypatch.setattr(query, "_MAX_DENSE_CELLS", dense_cells)
    data = rows()
    got = await query.percentiles_by_key(chunks(data), lambda b, sid: (b, sid % 3))
    assert got == reference(data)
    assert len(got) == 17 * 3
