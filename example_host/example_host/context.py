"""The one context object every hook receives: config, paths, listen address and per-host state."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HostContext"]


@dataclass
class HostContext:
    """What a plugin may know about the host it runs in; one instance per host (no globals)."""

    config: dict[str, Any]
    config_path: Path | None = None
    data_dir: Path = field(default_factory=Path.cwd)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    loopback_only: bool = True
    workspace: str = "default"
    environment: str = "dev"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("mockforge"))
    # Per-host plugin state: each plugin keeps its runtime under its own name.
    state: dict[str, Any] = field(default_factory=dict)
    version: str = "0.0.0"

    def plugin_config(self, name: str) -> dict[str, Any] | None:
        """Return the raw `plugins.<name>` section of the config, or None when absent."""
        plugins = self.config.get("plugins") or {}
        if name not in plugins:
            return None
        section = plugins[name]
        # `analytics:` with nothing under it is a present (enabled) section with no keys.
        return dict(section) if isinstance(section, dict) else {}

    def resolve_path(self, path: str | Path) -> Path:
        """Resolve a path from the config against the config file's folder."""
        p = Path(path)
        return p if p.is_absolute() else self.data_dir / p
