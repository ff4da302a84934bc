"""Shared pytest set-up. Helpers for starting real processes live in tests/support/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/support is importable as `support` from every test module.
sys.path.insert(0, str(Path(__file__).parent))

from support.wheels import InstalledWheels, build_and_install


@pytest.fixture(scope="session")
def installed_wheels(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheels:
    """Plugin and host built as wheels once per session and installed into a fresh venv."""
    return build_and_install(tmp_path_factory.mktemp("wheels"))
