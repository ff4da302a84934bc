"""Shared pytest set-up. Helpers for starting real processes live in tests/support/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/support is importable as `support` from every test module.
sys.path.insert(0, str(Path(__file__).parent))

from support.wheels import InstalledWheels, build_and_install

from mockforge_analytics_plugin import speedups

# An edited checkout whose compiled capture modules were built from older source: test the
# source (the .py files), and let test_speedups say that the build is stale.
if speedups.stale_modules() and not speedups.pure_python_requested():
    sys.stderr.write(
        f"tests: compiled {speedups.stale_modules()} are older than their source; testing the .py "
        "files (rebuild with `pip install -e .`, which scripts/test.sh does)\n"
    )
    speedups.install_pure_python_finder()


@pytest.fixture(scope="session")
def installed_wheels(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheels:
    """Plugin and host built as wheels once per session and installed into a fresh venv."""
    return build_and_install(tmp_path_factory.mktemp("wheels"))
