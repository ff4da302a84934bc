"""Label presets: which metrics and labels carry (path, method, status, protocol) for each exporter.

A preset names a request counter and a latency histogram and the labels that hold the key
dimensions. Exporters differ in three ways that matter here:

* prometheus-fastapi-instrumentator groups status codes into classes (``2xx``) by default, so a
  status label may hold a class; it is stored as the class's first code (``4xx`` -> 400), which
  keeps ``status >= 400`` (the error rule) right.
* Some histograms carry no status label (the host's ``mockforge_request_duration_by_path_seconds``,
  the instrumentator's ``http_request_duration_seconds``). Their latencies go to a row of status
  code 0 with request_count 0 for the same (instance, protocol, method, path): latency merges by
  endpoint stay right and request counts per status stay exact.
* OpenTelemetry has no separate counter: the histogram's ``_count`` is the request counter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PRESETS",
    "Dims",
    "Preset",
    "PresetError",
    "parse_status",
    "preset_from_mapping",
    "resolve_preset",
    "validate_selector",
]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)


class PresetError(ValueError):
    """An unknown preset or an invalid custom mapping; the message names the config key."""


@dataclass(frozen=True, slots=True)
class Dims:
    """The key dimensions one Prometheus series maps to (the minute and source added later)."""

    instance: str
    protocol: str
    method: str
    endpoint: str
    status_code: int


@dataclass(frozen=True, slots=True)
class Preset:
    """Metric and label names of one exporter. ``counter=None`` means: count from ``<histogram>_count``."""

    name: str
    counter: str | None
    histogram: str | None
    path_label: str
    method_label: str = "method"
    status_label: str | None = "status"
    protocol_label: str | None = None
    default_protocol: str = "http"

    @property
    def counter_metric(self) -> str:
        """The metric whose increase is the request count."""
        if self.counter:
            return self.counter
        assert self.histogram is not None  # validated: one of the two is set
        return self.histogram + "_count"

    def dims(self, labels: Mapping[str, str]) -> Dims:
        """Map one series' labels to key dimensions; a missing status label gives status 0."""
        protocol = labels.get(self.protocol_label, "") if self.protocol_label else ""
        status = labels.get(self.status_label) if self.status_label else None
        return Dims(
            instance=labels.get("instance", ""),
            protocol=(protocol or self.default_protocol).lower(),
            method=labels.get(self.method_label, "").upper(),
            endpoint=labels.get(self.path_label, ""),
            status_code=parse_status(status),
        )


def parse_status(value: str | None) -> int:
    """Return a status label as an int: ``"404"`` -> 404, a class ``"4xx"`` -> 400, else 0."""
    if not value:
        return 0
    text = value.strip()
    if text.isdigit():
        return int(text)
    match = _STATUS_CLASS.match(text)
    if match:
        return int(match.group(1)) * 100
    return 0


PRESETS: dict[str, Preset] = {
    "mockforge": Preset(
        name="mockforge",
        counter="mockforge_requests_by_path_total",
        histogram="mockforge_request_duration_by_path_seconds",
        path_label="path",
        method_label="method",
        status_label="status",
        protocol_label="protocol",
    ),
    "starlette_exporter": Preset(
        name="starlette_exporter",
        counter="starlette_requests_total",
        histogram="starlette_request_duration_seconds",
        path_label="path",
        method_label="method",
        status_label="status_code",
    ),
    "fastapi_instrumentator": Preset(
        name="fastapi_instrumentator",
        counter="http_requests_total",
        histogram="http_request_duration_seconds",
        path_label="handler",
        method_label="method",
        status_label="status",
    ),
    "opentelemetry": Preset(
        name="opentelemetry",
        counter=None,
        histogram="http_server_request_duration_seconds",
        path_label="http_route",
        method_label="http_request_method",
        status_label="http_response_status_code",
    ),
}

_MAPPING_KEYS = ("counter", "histogram", "path_label", "method_label", "status_label", "protocol_label")


def preset_from_mapping(mapping: Mapping[str, object], key: str = "prometheus_mapping") -> Preset:
    """Build a custom preset from config; raise PresetError naming ``<key>.<field>`` when invalid."""
    if not isinstance(mapping, Mapping):
        raise PresetError(f"{key}: must be a mapping of {', '.join(_MAPPING_KEYS)}")
    for name in mapping:
        if name not in _MAPPING_KEYS:
            raise PresetError(f"{key}.{name}: unknown key (allowed: {', '.join(_MAPPING_KEYS)})")
    values: dict[str, str | None] = {}
    for name in _MAPPING_KEYS:
        value = mapping.get(name)
        if value is None or value == "":
            values[name] = None
            continue
        if not isinstance(value, str):
            raise PresetError(f"{key}.{name}: must be a string, got {type(value).__name__}")
        pattern = _METRIC_NAME if name in ("counter", "histogram") else _LABEL_NAME
        if not pattern.match(value):
            kind = "metric" if pattern is _METRIC_NAME else "label"
            raise PresetError(f"{key}.{name}: {value!r} is not a valid Prometheus {kind} name")
        values[name] = value
    if not values["counter"] and not values["histogram"]:
        raise PresetError(f"{key}.counter: set counter or histogram (or both)")
    if not values["path_label"]:
        raise PresetError(f"{key}.path_label: required")
    histogram = values["histogram"]
    if histogram and histogram.endswith(("_bucket", "_count", "_sum")):
        raise PresetError(f"{key}.histogram: give the base name without _bucket/_count/_sum")
    return Preset(
        name="custom",
        counter=values["counter"],
        histogram=histogram,
        path_label=values["path_label"] or "",
        method_label=values["method_label"] or "method",
        status_label=values["status_label"],
        protocol_label=values["protocol_label"],
    )


def resolve_preset(preset: str, mapping: Mapping[str, object] | None = None) -> Preset:
    """Return the preset named by ``prometheus_preset`` (``custom`` reads ``prometheus_mapping``)."""
    if preset == "custom":
        if not mapping:
            raise PresetError("prometheus_mapping: required when prometheus_preset is 'custom'")
        return preset_from_mapping(mapping)
    if mapping:
        # An explicit mapping overrides the named preset's names, key by key.
        base = PRESETS.get(preset)
        if base is None:
            raise PresetError(f"prometheus_preset: unknown preset {preset!r} (known: {_known()})")
        merged: dict[str, object] = {
            "counter": base.counter,
            "histogram": base.histogram,
            "path_label": base.path_label,
            "method_label": base.method_label,
            "status_label": base.status_label,
            "protocol_label": base.protocol_label,
        }
        merged.update(mapping)
        return preset_from_mapping(merged)
    found = PRESETS.get(preset)
    if found is None:
        raise PresetError(f"prometheus_preset: unknown preset {preset!r} (known: {_known()})")
    return found


def _known() -> str:
    return ", ".join([*PRESETS, "custom"])


def validate_selector(selector: str | None) -> str:
    """Return the label matchers of ``prometheus_selector`` without braces; raise PresetError if unsafe."""
    if not selector:
        return ""
    text = selector.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    # Braces outside quoted strings would let the selector escape its matcher list.
    unquoted = _QUOTED.sub("", text)
    if any(ch in unquoted for ch in "{}[]()") or "'" in unquoted or '"' in unquoted:
        raise PresetError(f'prometheus_selector: {selector!r} is not a list of label matchers (job="mock")')
    return text
