"""Traffic analytics for the MockForge example mock server, as a pluggy plugin."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
