"""The Prometheus source: pull a fleet's request counters and latency histograms into minute rows."""

from __future__ import annotations

from .client import (
    PrometheusClient,
    PrometheusError,
    PrometheusHTTPError,
    PrometheusMalformedResponse,
    PrometheusQueryError,
    PrometheusUnreachable,
)
from .presets import PRESETS, Preset, PresetError, resolve_preset, validate_selector
from .source import IngestResult, PrometheusSource

__all__ = [
    "PRESETS",
    "IngestResult",
    "Preset",
    "PresetError",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusHTTPError",
    "PrometheusMalformedResponse",
    "PrometheusQueryError",
    "PrometheusSource",
    "PrometheusUnreachable",
    "resolve_preset",
    "validate_selector",
]
