"""The compiled capture path: which modules run as mypyc extensions, whether a build is stale,
and the switch that loads their .py files instead.

setup.py compiles COMPILED_MODULES with mypyc (the same source, as C extensions) and records each
source file's SHA-256 in SOURCES_FILE. An extension whose source changed since the build is
stale (an edited checkout): ``stale_modules`` names it and the plugin logs a warning at start-up.
``MOCKFORGE_ANALYTICS_PURE_PYTHON=1`` makes the package import the .py files of these modules
even when extensions are present (profiling, debugging, or a stale build).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = [
    "COMPILED_MODULES",
    "PURE_ENV",
    "compiled_modules",
    "install_pure_python_finder",
    "pure_python_requested",
    "stale_modules",
]

PACKAGE = "mockforge_analytics_plugin"
COMPILED_MODULES = ("middleware", "capture_build", "recorder", "recorder_fold")
PURE_ENV = "MOCKFORGE_ANALYTICS_PURE_PYTHON"
SOURCES_FILE = "_compiled_sources.json"  # written by setup.py: {module: sha256 of its .py}
_HERE = Path(__file__).resolve().parent


def pure_python_requested(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Whether the environment asks for the .py files of the compiled modules."""
    value = (os.environ if environ is None else environ).get(PURE_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def _extension_of(name: str, folder: Path = _HERE) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None


def compiled_modules() -> list[str]:
    """Capture modules that are loaded (or would load) from a compiled extension."""
    names = []
    for name in COMPILED_MODULES:
        module = sys.modules.get(f"{PACKAGE}.{name}")
        if module is not None:
            if _is_extension(module):
                names.append(name)
        elif not pure_python_requested() and _extension_of(name) is not None:
            names.append(name)
    return names


def _is_extension(module: ModuleType) -> bool:
    origin = getattr(module, "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def stale_modules(folder: Path = _HERE) -> list[str]:
    """Compiled modules whose .py no longer matches the source they were built from."""
    extensions = [name for name in COMPILED_MODULES if _extension_of(name, folder) is not None]
    if not extensions:
        return []
    try:
        built = json.loads((folder / SOURCES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return extensions  # extensions with no record of their source: cannot vouch for them
    stale = []
    for name in extensions:
        source = folder / f"{name}.py"
        try:
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            continue  # a wheel may ship the extension alone: nothing to compare with
        if built.get(name) != digest:
            stale.append(name)
    return stale


class _SourceFirstFinder:
    """A meta path finder that loads the compiled modules from their .py files."""

    def __init__(self, names: Sequence[str], folder: Path) -> None:
        self._paths = {f"{PACKAGE}.{name}": folder / f"{name}.py" for name in names}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        """A source spec for one of the compiled modules, else None (the normal search goes on)."""
        source = self._paths.get(fullname)
        if source is None or not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def install_pure_python_finder(folder: Path = _HERE) -> bool:
    """Make later imports of the compiled modules load their .py files; False if already loaded."""
    if any(f"{PACKAGE}.{name}" in sys.modules for name in COMPILED_MODULES):
        return False
    if not any(isinstance(f, _SourceFirstFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirstFinder(COMPILED_MODULES, folder))  # type: ignore[arg-type]
    return True
