"""The example host freezes the garbage collector's view of its start-up heap, when asked to."""

from __future__ import annotations

import gc

import pytest
from example_host.app import build_app

CONFIG = {"routes": [{"method": "GET", "path": "/api/ping", "body": "pong"}]}


@pytest.mark.parametrize("freeze", [True, False])
async def test_start_up_heap_is_frozen_while_serving_and_given_back_at_shutdown(freeze: bool) -> None:
    gc.unfreeze()  # whatever an earlier test left
    app = build_app(CONFIG, plugins={}, freeze_gc=freeze)
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
    assert (frozen > 1000) is freeze  # the whole start-up heap, not a handful of objects
    assert gc.get_freeze_count() == 0  # unfrozen at shutdown: collectable again
