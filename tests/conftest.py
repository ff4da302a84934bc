"""Shared pytest set-up. Helpers for starting real processes live in tests/support/."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/support is importable as `support` from every test module.
sys.path.insert(0, str(Path(__file__).parent))
