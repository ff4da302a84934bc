"""MockForge example host: a small mock API server that loads pluggy plugins."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
