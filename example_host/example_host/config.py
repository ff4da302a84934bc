"""Load the host's YAML config and validate it into typed specs; errors name the key."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import compile_path

__all__ = [
    "ConfigError",
    "FaultSpec",
    "HostConfig",
    "RouteSpec",
    "load_config_file",
    "validate_config",
]

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
TOP_KEYS = ("server", "workspace", "environment", "seed", "routes", "plugins")
SERVER_KEYS = ("host", "port")
ROUTE_KEYS = (
    "id",
    "method",
    "path",
    "status",
    "body",
    "headers",
    "latency_ms",
    "faults",
    "websocket",
    "raise",
)
FAULT_KEYS = ("error_rate", "status", "body")
WEBSOCKET_MODES = ("echo",)
_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?}")


class ConfigError(ValueError):
    """A config value is wrong; `key` is its dotted path (e.g. `routes[2].status`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class FaultSpec:
    """Fault injection of one route: answer `status` with probability `error_rate`."""

    error_rate: float
    status: int = 500
    body: Any = None
    has_body: bool = False


@dataclass(frozen=True)
class RouteSpec:
    """One mock route, validated."""

    id: str
    method: str
    path: str
    param_names: tuple[str, ...]
    status: int = 200
    body: Any = None
    has_body: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    latency_ms: tuple[float, float] | None = None
    faults: FaultSpec | None = None
    websocket: str | None = None
    raise_message: str | None = None


@dataclass(frozen=True)
class HostConfig:
    """The whole host config, validated; `raw` is the parsed YAML as given."""

    raw: dict[str, Any]
    host: str | None = None
    port: int | None = None
    workspace: str = "default"
    environment: str = "dev"
    seed: int | None = None
    routes: tuple[RouteSpec, ...] = ()
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (an empty file is an empty config)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping, got {_type_name(data)}")
    return data


def validate_config(raw: dict[str, Any]) -> HostConfig:
    """Check every key of the config and return typed specs; raise ConfigError on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("", f"the config must be a mapping, got {_type_name(raw)}")
    _reject_unknown(raw, TOP_KEYS, "")
    server = _mapping(raw.get("server"), "server") or {}
    _reject_unknown(server, SERVER_KEYS, "server")
    host = _opt_str(server.get("host"), "server.host")
    port = _opt_int(server.get("port"), "server.port")
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError("server.port", f"must be between 0 and 65535, got {port}")
    workspace = _opt_str(raw.get("workspace"), "workspace", nonempty=True) or "default"
    environment = _opt_str(raw.get("environment"), "environment", nonempty=True) or "dev"
    seed = _opt_int(raw.get("seed"), "seed")
    routes_raw = raw.get("routes")
    if routes_raw is None:
        routes_raw = []
    if not isinstance(routes_raw, list):
        raise ConfigError("routes", f"must be a list, got {_type_name(routes_raw)}")
    routes = tuple(_route(r, f"routes[{i}]") for i, r in enumerate(routes_raw))
    _reject_duplicates(routes)
    plugins = _plugins(raw.get("plugins"))
    return HostConfig(
        raw=raw,
        host=host,
        port=port,
        workspace=workspace,
        environment=environment,
        seed=seed,
        routes=routes,
        plugins=plugins,
    )


def _route(data: Any, key: str) -> RouteSpec:
    """Validate one entry of `routes`."""
    if not isinstance(data, dict):
        raise ConfigError(key, f"must be a mapping, got {_type_name(data)}")
    _reject_unknown(data, ROUTE_KEYS, key)
    if "method" not in data:
        raise ConfigError(f"{key}.method", "missing (one of " + ", ".join(HTTP_METHODS) + ")")
    method = _opt_str(data["method"], f"{key}.method")
    method = (method or "").upper()
    if method not in HTTP_METHODS:
        allowed = ", ".join(HTTP_METHODS)
        raise ConfigError(f"{key}.method", f"must be one of {allowed}, got {data['method']!r}")
    if "path" not in data:
        raise ConfigError(f"{key}.path", "missing (a path template such as /api/users/{id})")
    path = _opt_str(data["path"], f"{key}.path") or ""
    params = _path_params(path, f"{key}.path")
    status = _opt_int(data.get("status"), f"{key}.status")
    status = 200 if status is None else status
    if not 100 <= status <= 599:
        raise ConfigError(f"{key}.status", f"must be between 100 and 599, got {status}")
    body = data.get("body")
    _check_json(body, f"{key}.body")
    headers = _headers(data.get("headers"), f"{key}.headers")
    latency = _latency(data.get("latency_ms"), f"{key}.latency_ms")
    faults = _faults(data.get("faults"), f"{key}.faults")
    websocket = _opt_str(data.get("websocket"), f"{key}.websocket")
    if websocket is not None:
        if websocket not in WEBSOCKET_MODES:
            allowed = ", ".join(WEBSOCKET_MODES)
            raise ConfigError(f"{key}.websocket", f"must be one of {allowed}, got {websocket!r}")
        if method != "GET":
            raise ConfigError(f"{key}.method", "a websocket route must use GET (the handshake)")
        for name in ("body", "faults", "raise", "status", "headers"):
            if name in data:
                raise ConfigError(f"{key}.{name}", "not allowed on a websocket route")
    raise_message = _opt_str(data.get("raise"), f"{key}.raise")
    route_id = _opt_str(data.get("id"), f"{key}.id", nonempty=True) or f"{method} {path}"
    return RouteSpec(
        id=route_id,
        method=method,
        path=path,
        param_names=params,
        status=status,
        body=body,
        has_body="body" in data,
        headers=headers,
        latency_ms=latency,
        faults=faults,
        websocket=websocket,
        raise_message=raise_message,
    )


def _path_params(path: str, key: str) -> tuple[str, ...]:
    """Check a Starlette path template and return its parameter names."""
    if not path.startswith("/"):
        raise ConfigError(key, f"must start with '/', got {path!r}")
    leftover = _PARAM.sub("", path)
    if "{" in leftover or "}" in leftover:
        raise ConfigError(key, f"bad path template {path!r}: parameters look like {{name}} or {{name:int}}")
    try:
        compile_path(path)
    except (AssertionError, ValueError) as exc:
        raise ConfigError(key, f"bad path template {path!r}: {exc}") from None
    return tuple(m.group(1) for m in _PARAM.finditer(path))


def _faults(data: Any, key: str) -> FaultSpec | None:
    """Validate a `faults` mapping."""
    if data is None:
        return None
    data = _mapping(data, key)
    _reject_unknown(data, FAULT_KEYS, key)
    if "error_rate" not in data:
        raise ConfigError(f"{key}.error_rate", "missing (a number from 0 to 1)")
    rate = _number(data["error_rate"], f"{key}.error_rate")
    if not 0 <= rate <= 1:
        raise ConfigError(f"{key}.error_rate", f"must be between 0 and 1, got {rate}")
    status = _opt_int(data.get("status"), f"{key}.status")
    status = 500 if status is None else status
    if not 400 <= status <= 599:
        raise ConfigError(f"{key}.status", f"must be between 400 and 599, got {status}")
    _check_json(data.get("body"), f"{key}.body")
    return FaultSpec(error_rate=rate, status=status, body=data.get("body"), has_body="body" in data)


def _latency(data: Any, key: str) -> tuple[float, float] | None:
    """Validate `latency_ms`: a number or [min, max]."""
    if data is None:
        return None
    if isinstance(data, list):
        if len(data) != 2:
            raise ConfigError(key, f"a range must be [min, max], got {len(data)} values")
        low, high = _number(data[0], f"{key}[0]"), _number(data[1], f"{key}[1]")
    else:
        low = high = _number(data, key)
    if low < 0 or high < low:
        raise ConfigError(key, f"need 0 <= min <= max, got [{low}, {high}]")
    return (low, high)


def _headers(data: Any, key: str) -> dict[str, str]:
    """Validate response headers: a mapping of names to strings (numbers are converted)."""
    if data is None:
        return {}
    data = _mapping(data, key)
    out: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name or any(c in name for c in " :\r\n"):
            raise ConfigError(key, f"bad header name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}.{name}", f"must be a string, got {_type_name(value)}")
        text = str(value)
        if "\r" in text or "\n" in text:
            raise ConfigError(f"{key}.{name}", "must not contain line breaks")
        out[name] = text
    return out


def _plugins(data: Any) -> dict[str, dict[str, Any]]:
    """Validate the `plugins` mapping: each section is a mapping (or empty); `enabled` is a bool."""
    if data is None:
        return {}
    data = _mapping(data, "plugins")
    out: dict[str, dict[str, Any]] = {}
    for name, section in data.items():
        if not isinstance(name, str):
            raise ConfigError("plugins", f"plugin names must be strings, got {name!r}")
        section = _mapping(section, f"plugins.{name}") or {}
        if "enabled" in section and not isinstance(section["enabled"], bool):
            raise ConfigError(f"plugins.{name}.enabled", f"must be true or false, got {section['enabled']!r}")
        out[name] = section
    return out


def _reject_duplicates(routes: tuple[RouteSpec, ...]) -> None:
    """Two routes with the same method and path (or the same id) would shadow each other."""
    seen: dict[tuple[str, str], int] = {}
    ids: dict[str, int] = {}
    for i, route in enumerate(routes):
        norm = (route.method, _PARAM.sub("{}", route.path))
        if norm in seen:
            what = f"duplicates routes[{seen[norm]}] ({route.method} {route.path})"
            raise ConfigError(f"routes[{i}]", what)
        seen[norm] = i
        if route.id in ids:
            raise ConfigError(f"routes[{i}].id", f"{route.id!r} is already used by routes[{ids[route.id]}]")
        ids[route.id] = i


def _reject_unknown(data: dict[str, Any], allowed: tuple[str, ...], key: str) -> None:
    """Unknown keys are errors (typos must not be silently ignored)."""
    for name in data:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(where, "unknown key (allowed: " + ", ".join(allowed) + ")")


def _mapping(value: Any, key: str) -> dict[str, Any] | None:
    """Return a mapping value or None; anything else is an error."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping, got {_type_name(value)}")
    return value


def _opt_str(value: Any, key: str, *, nonempty: bool = False) -> str | None:
    """Return a string value or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {_type_name(value)}")
    if nonempty and not value.strip():
        raise ConfigError(key, "must not be empty")
    return value


def _opt_int(value: Any, key: str) -> int | None:
    """Return an integer value or None (booleans are not integers here)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {_type_name(value)}")
    return value


def _number(value: Any, key: str) -> float:
    """Return a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a number, got {_type_name(value)}")
    return float(value)


def _check_json(value: Any, key: str) -> None:
    """A body must be a JSON value (YAML may hold dates and other types JSON cannot carry)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(key, "must be a finite number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{key}[{i}]")
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise ConfigError(key, f"object keys must be strings, got {name!r}")
            _check_json(item, f"{key}.{name}")
        return
    raise ConfigError(key, f"must be a JSON value, got {_type_name(value)}")


def _type_name(value: Any) -> str:
    """A YAML-ish name for a value's type, for messages."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
