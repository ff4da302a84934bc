"""Parse and validate the `plugins.analytics` section into an AnalyticsConfig, naming bad keys."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config import DEFAULT_DATABASE_PATH, AnalyticsConfig, AuthConfig, RetentionConfig

__all__ = ["ConfigError", "parse_config", "redact_url", "redacted"]

PREFIX = "plugins.analytics"
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class ConfigError(ValueError):
    """A config value is wrong; the message names the full key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ConfigError(key, f"must be true or false, got {v!r}")


def _positive_number(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ConfigError(key, f"must be a number > 0, got {v!r}")
    return float(v)


def _positive_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(key, f"must be a whole number > 0, got {v!r}")
    return v


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(key, f"must be a non-empty string, got {v!r}")
    return v


def _opt_str(key: str, v: Any) -> str | None:
    return None if v is None else _str(key, v)


def _header(key: str, v: Any) -> str | None:
    if v is None:
        return None
    s = _str(key, v)
    if not _HEADER.match(s):
        raise ConfigError(key, f"must be an HTTP header name, got {v!r}")
    return s


def _str_list(key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(key, f"must be a list of non-empty strings, got {v!r}")
    return tuple(v)


def _path_list(key: str, v: Any) -> tuple[str, ...]:
    items = _str_list(key, v)
    for item in items:
        if not item.startswith("/"):
            raise ConfigError(key, f"every path must start with '/', got {item!r}")
    return items


def _mount_path(key: str, v: Any) -> str:
    s = _str(key, v)
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", s):
        raise ConfigError(key, f"must look like '/analytics' (no trailing slash, no spaces), got {v!r}")
    return s


def _database_url(key: str, v: Any) -> str | None:
    if v is None:
        return None
    s = _str(key, v)
    if not s.startswith(("postgresql://", "postgres://")):
        raise ConfigError(key, f"must be a postgresql:// URL, got {s.split('@')[-1]!r}")
    return s


def _http_url(key: str, v: Any) -> str | None:
    if v is None:
        return None
    s = _str(key, v)
    if not s.startswith(("http://", "https://")):
        raise ConfigError(key, f"must be an http:// or https:// URL, got {v!r}")
    return s.rstrip("/")


def _preset(key: str, v: Any) -> str:
    from .prometheus.presets import PRESETS

    s = _str(key, v)
    names = [*PRESETS, "custom"]
    if s not in names:
        raise ConfigError(key, f"must be one of {', '.join(names)}; got {v!r}")
    return s


def _mapping(key: str, v: Any) -> dict[str, str] | None:
    if v is None:
        return None
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ConfigError(key, "must be a mapping of names to strings")
    return dict(v)


def _auth(key: str, v: Any) -> AuthConfig | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ConfigError(key, "must be a mapping with 'token', or 'username' and 'password'")
    unknown = set(v) - {"token", "username", "password"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key (allowed: token, username, password)")
    token = _opt_str(f"{key}.token", v.get("token"))
    username = _opt_str(f"{key}.username", v.get("username"))
    password = _opt_str(f"{key}.password", v.get("password"))
    if token and (username or password):
        raise ConfigError(key, "set either 'token' or 'username' and 'password', not both")
    if not token and not (username and password):
        raise ConfigError(key, "needs 'token', or both 'username' and 'password'")
    if token is not None and len(token) < 16:
        raise ConfigError(f"{key}.token", "must be at least 16 characters")
    return AuthConfig(token=token, username=username, password=password)


def _retention(key: str, v: Any) -> RetentionConfig:
    if v is None:
        return RetentionConfig()
    if not isinstance(v, Mapping):
        raise ConfigError(key, "must be a mapping of table limits in days")
    names = {f.name for f in dataclasses.fields(RetentionConfig)}
    values: dict[str, float] = {}
    for name, raw in v.items():
        if name not in names:
            raise ConfigError(f"{key}.{name}", f"unknown key (allowed: {', '.join(sorted(names))})")
        values[name] = _positive_number(f"{key}.{name}", raw)
    _check_horizons(key, values)
    return RetentionConfig(**values)


# Each histogram horizon and what it may not exceed: its tier's retention, and the minute
# horizon also the hour one (a slim hour must never hold a minute's histogram: docs/storage.md).
_HORIZON_CAPS = (
    ("hour_histograms_days", ("hour_aggregates_days",)),
    ("minute_histograms_days", ("minute_aggregates_days", "hour_histograms_days")),
)


def _check_horizons(key: str, values: dict[str, float]) -> None:
    """Fill in or check the histogram horizons; an explicit value past a cap is an error naming it.

    A default that would pass a cap is pulled in, so `minute_aggregates_days: 0.5` alone works.
    """
    defaults = RetentionConfig()

    def days(name: str) -> float:
        return values.get(name, getattr(defaults, name))

    for horizon, caps in _HORIZON_CAPS:
        if horizon not in values:
            values[horizon] = min(getattr(defaults, horizon), *(days(cap) for cap in caps))
            continue
        for cap in caps:
            if values[horizon] > days(cap):
                raise ConfigError(
                    f"{key}.{horizon}", f"must be <= {cap} ({days(cap):g}), got {values[horizon]:g}"
                )


_Parser = Callable[[str, Any], Any]
_FIELDS: dict[str, _Parser] = {
    "enabled": _bool,
    "database_path": _str,
    "database_url": _database_url,
    "mount_path": _mount_path,
    "instance": _opt_str,
    "flush_interval_seconds": _positive_number,
    "rollup_interval_hours": _positive_number,
    "aggregation_interval_seconds": _positive_number,
    "batch_size": _positive_int,
    "max_query_results": _positive_int,
    "max_endpoints": _positive_int,
    "max_clients": _positive_int,
    "max_test_runs": _positive_int,
    "max_buffered_events": _positive_int,
    "max_error_events_per_minute": _positive_int,
    "recent_requests": _positive_int,
    "client_id_header": _header,
    "trusted_proxies": _str_list,
    "test_run_header": _header,
    "graphql_paths": _path_list,
    "exclude_paths": _path_list,
    "prometheus_url": _http_url,
    "prometheus_selector": _opt_str,
    "prometheus_preset": _preset,
    "prometheus_backfill_minutes": _positive_int,
    "prometheus_mapping": _mapping,
    "auth": _auth,
    "retention": _retention,
}


def parse_config(section: Mapping[str, Any] | None, *, data_dir: Path | None = None) -> AnalyticsConfig:
    """Validate a raw `plugins.analytics` mapping; raise ConfigError naming the first bad key."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(PREFIX, "must be a mapping of settings")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        parser = _FIELDS.get(str(key))
        if parser is None:
            raise ConfigError(f"{PREFIX}.{key}", "unknown key (see the README for the accepted keys)")
        values[key] = parser(f"{PREFIX}.{key}", raw)
    if "trusted_proxies" in values:
        _check_addresses(values["trusted_proxies"])
    path = values.get("database_path")
    if path is not None and path != ":memory:" and data_dir is not None and not Path(path).is_absolute():
        values["database_path"] = str((data_dir / path).resolve())
    elif path is None and data_dir is not None:
        values["database_path"] = str((data_dir / DEFAULT_DATABASE_PATH).resolve())
    if values.get("database_url"):
        # Kept as a documented key so configs written for shared PostgreSQL stores fail loudly
        # here rather than silently writing to a local SQLite file.
        raise ConfigError(
            f"{PREFIX}.database_url",
            "PostgreSQL storage is not available in this version; remove the key to use SQLite",
        )
    if values.get("prometheus_preset") == "custom" and not values.get("prometheus_mapping"):
        raise ConfigError(f"{PREFIX}.prometheus_mapping", "is required when prometheus_preset is 'custom'")
    _check_prometheus(values)
    return AnalyticsConfig(**values)


def _check_prometheus(values: dict[str, Any]) -> None:
    """Resolve the preset and selector now, so a bad one stops start-up instead of every pull."""
    from .prometheus.presets import PresetError, resolve_preset, validate_selector

    try:
        resolve_preset(values.get("prometheus_preset", "mockforge"), values.get("prometheus_mapping"))
        validate_selector(values.get("prometheus_selector"))
    except PresetError as exc:
        message = str(exc)
        key, sep, rest = message.partition(": ")
        if sep and key.startswith("prometheus_"):
            raise ConfigError(f"{PREFIX}.{key}", rest) from None
        raise ConfigError(f"{PREFIX}.prometheus_preset", message) from None


def _check_addresses(addresses: tuple[str, ...]) -> None:
    import ipaddress

    for addr in addresses:
        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ConfigError(
                f"{PREFIX}.trusted_proxies", f"{addr!r} is not an IP address or network"
            ) from None


def redact_url(url: str | None) -> str | None:
    """The URL with any password in its user info replaced by '***' (for status and messages)."""
    if not url:
        return url
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def redacted(config: AnalyticsConfig) -> dict[str, Any]:
    """The config in effect as plain JSON-able data, with secrets replaced by '***'."""
    data = dataclasses.asdict(config)
    if data.get("auth"):
        data["auth"] = {k: ("***" if v else None) for k, v in data["auth"].items()}
        if config.auth and config.auth.username:
            data["auth"]["username"] = config.auth.username
    for key in ("database_url", "prometheus_url"):
        data[key] = redact_url(data.get(key))
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    return data
