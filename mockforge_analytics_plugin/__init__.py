"""Traffic analytics for the MockForge example mock server, as a pluggy plugin."""

from __future__ import annotations

from . import speedups

__version__ = "0.1.0"

__all__ = ["__version__"]

# Before any capture module is imported: MOCKFORGE_ANALYTICS_PURE_PYTHON=1 loads their .py files.
if speedups.pure_python_requested():
    speedups.install_pure_python_finder()
