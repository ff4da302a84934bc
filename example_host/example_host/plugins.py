"""Plugin discovery (entry points), enablement from the config, and the per-host PluginManager."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import __version__, hookspecs

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "EXTRA_PLUGINS_ENV",
    "PluginError",
    "PluginInfo",
    "call_each",
    "discover_plugins",
    "get_plugin_manager",
    "hooks_of",
    "list_plugins",
    "load_plugins",
]

ENTRY_POINT_GROUP = "mockforge.plugins"
# For tests and development only: "name=module:attr,module2" registers plugins that are not
# installed as distributions (entry points need an installed distribution).
EXTRA_PLUGINS_ENV = "MOCKFORGE_EXTRA_PLUGINS"
# Built-in features written as plugins; always on, registered first.
DEFAULT_PLUGINS = ("example_host.metrics", "example_host.introspection")


class PluginError(Exception):
    """A plugin could not be found, loaded, validated or configured; the message names it."""


@dataclass
class PluginInfo:
    """What the host knows about one plugin (shown by `example-host plugins` and plugins.json)."""

    name: str
    version: str | None
    enabled: bool
    builtin: bool = False
    source: str = "entry point"
    hooks: list[str] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "version": self.version,
            "enabled": self.enabled,
            "builtin": self.builtin,
            "source": self.source,
            "hooks": list(self.hooks),
            "links": list(self.links),
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class _Candidate:
    """A plugin that could be registered: loaded lazily so disabled plugins cost nothing."""

    name: str
    version: str | None
    source: str
    loader: Any  # () -> object
    builtin: bool = False
    obj: Any = None

    def load(self) -> Any:
        """Import the plugin object once."""
        if self.obj is None:
            self.obj = self.loader()
        return self.obj


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh PluginManager with the mockforge hookspecs (one per host, never global)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def hooks_of(obj: Any) -> list[str]:
    """Names of the mockforge hooks an object implements (without registering it)."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    names = []
    for attr in dir(obj):
        try:
            value = getattr(obj, attr)
        except Exception:  # a property that fails is not a hook
            continue
        if callable(value) and getattr(value, marker, None) is not None:
            names.append(attr)
    return sorted(names)


def _object_version(obj: Any) -> str | None:
    """A version for a plugin registered as an object (not from a distribution)."""
    version = getattr(obj, "__version__", None)
    return str(version) if version is not None else None


def _extra_from_env(value: str) -> list[_Candidate]:
    """Parse MOCKFORGE_EXTRA_PLUGINS: `name=module:attr` or `module[:attr]` items, comma-separated."""
    out = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, _, target = item.rpartition("=")
        module_name, _, attr = target.partition(":")
        name = name or (attr or module_name.rsplit(".", 1)[-1])

        def loader(module_name: str = module_name, attr: str = attr) -> Any:
            module = importlib.import_module(module_name)
            return getattr(module, attr) if attr else module

        source = f"{EXTRA_PLUGINS_ENV} ({target})"
        out.append(_Candidate(name=name, version=None, source=source, loader=loader))
    return out


def discover_plugins(env: Mapping[str, str] | None = None) -> list[_Candidate]:
    """Installed plugins (entry-point group `mockforge.plugins`) plus MOCKFORGE_EXTRA_PLUGINS ones."""
    environ: Mapping[str, str] = os.environ if env is None else env
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        version = ep.dist.version if ep.dist is not None else None
        source = f"entry point {ep.value}"
        out.append(_Candidate(name=ep.name, version=version, source=source, loader=ep.load))
    extra = environ.get(EXTRA_PLUGINS_ENV, "")
    if extra:
        out.extend(_extra_from_env(extra))
    return out


def _defaults() -> list[_Candidate]:
    """The built-in default plugins."""
    out = []
    for module_name in DEFAULT_PLUGINS:
        short = module_name.rsplit(".", 1)[-1]
        out.append(
            _Candidate(
                name=short,
                version=__version__,
                source="built in",
                loader=lambda m=module_name: importlib.import_module(m),
                builtin=True,
            )
        )
    return out


def load_plugins(
    sections: dict[str, dict[str, Any]],
    *,
    plugins: dict[str, Any] | None = None,
    discover: bool = True,
    env: Mapping[str, str] | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Register the default plugins and every enabled plugin; return the manager and all infos.

    A plugin is enabled when the config has a `plugins.<name>` section without `enabled: false`.
    `plugins` adds explicitly given objects (tests); `discover` adds installed entry points.
    """
    candidates: list[_Candidate] = []
    if discover:
        candidates.extend(discover_plugins(env))
    for name, obj in (plugins or {}).items():
        version = _object_version(obj)
        candidates.append(_Candidate(name, version, "registered", loader=lambda o=obj: o, obj=obj))
    builtins = _defaults()
    builtin_names = {c.name for c in builtins}
    by_name: dict[str, _Candidate] = {}
    for cand in candidates:
        if cand.name in builtin_names:
            raise PluginError(f"plugin '{cand.name}': the name is taken by a built-in plugin")
        by_name[cand.name] = cand  # an explicitly given object wins over an installed one
    for name in sections:
        if name in builtin_names:
            raise PluginError(f"plugin '{name}': built in and always on; it takes no config section")
        if name not in by_name:
            installed = ", ".join(sorted(by_name)) or "none"
            raise PluginError(
                f"plugin '{name}' is named in config but not installed (installed: {installed})"
            )

    pm = get_plugin_manager()
    infos: list[PluginInfo] = []
    for cand in [*builtins, *by_name.values()]:
        section = sections.get(cand.name)
        enabled = cand.builtin or (section is not None and section.get("enabled", True) is not False)
        info = PluginInfo(cand.name, cand.version, enabled, builtin=cand.builtin, source=cand.source)
        infos.append(info)
        if not enabled:
            continue
        try:
            obj = cand.load()
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise PluginError(f"plugin '{cand.name}': cannot be loaded: {why}") from None
        try:
            pm.register(obj, name=cand.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin '{cand.name}': {exc}") from None
        info.hooks = hooks_of(obj)
        if info.version is None:
            info.version = _object_version(obj)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = (pm.get_name(exc.plugin) if exc.plugin is not None else None) or "?"
        raise PluginError(f"plugin '{name}': {exc}") from None
    return pm, infos


def list_plugins(
    sections: dict[str, dict[str, Any]], env: Mapping[str, str] | None = None
) -> list[PluginInfo]:
    """Every discovered plugin with its hooks (loading disabled ones too), for `example-host plugins`."""
    infos = []
    for cand in [*_defaults(), *discover_plugins(env)]:
        section = sections.get(cand.name)
        enabled = cand.builtin or (section is not None and section.get("enabled", True) is not False)
        info = PluginInfo(cand.name, cand.version, enabled, builtin=cand.builtin, source=cand.source)
        try:
            obj = cand.load()
            info.hooks = hooks_of(obj)
            if info.version is None:
                info.version = _object_version(obj)
        except Exception as exc:
            info.error = f"cannot be loaded: {type(exc).__name__}: {exc}"
        infos.append(info)
    return infos


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call one hook's implementations one at a time, in pluggy's call order, naming each plugin.

    Lets the host say which plugin failed or clashed; implementations may omit arguments.
    """
    caller = getattr(pm.hook, hook_name)
    results = []
    for impl in reversed(caller.get_hookimpls()):  # pluggy calls the last registered first
        args = {name: kwargs[name] for name in impl.argnames}
        name = pm.get_name(impl.plugin) or impl.plugin_name
        results.append((name, impl.function(**args)))
    return results
