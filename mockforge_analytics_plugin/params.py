"""Query parameters of the analytics API, parsed and validated in one place.

Every route declares the parameters it accepts; anything else is a :class:`ParamError` (HTTP 400)
naming the parameter, so no filter is ever silently ignored. The same parser takes a plain dict
(the WebSocket stream's JSON config).

The window: ``start_time``/``end_time`` (Unix seconds or ISO 8601, naive = UTC), end defaulting
to now, or ``duration`` seconds back from the end (default 3600). A window holds the minutes whose
start lies in ``[start_time, end_time)``; both ends are therefore rounded UP to a minute boundary
(``QueryParams.start``/``end``), so a ragged window reads exactly the minute rows it covers.

``granularity=auto`` picks the coarsest of day/hour/minute that still gives at least
:data:`AUTO_MIN_POINTS` buckets (24 h -> hour, 7 d -> hour, 30 d -> day, 1 h -> minute).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import AnalyticsConfig

__all__ = [
    "AUTO_MIN_POINTS",
    "COMMON_PARAMS",
    "FILTER_PARAMS",
    "GRANULARITIES",
    "GROUP_BYS",
    "MAX_BUCKETS",
    "SERIES_FILTERS",
    "TIME_PARAMS",
    "ParamError",
    "QueryParams",
    "StatusFilter",
    "parse_params",
]

GRANULARITIES: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
AUTO_MIN_POINTS = 24
MAX_BUCKETS = 20_000  # per series: beyond this a chart is unreadable and a response huge
MAX_WINDOW_SECONDS = 5 * 366 * 86400
TIME_PARAMS = ("start_time", "end_time", "duration", "granularity")
# Filters on the dimensions of a `series` row; `client` is a dimension of client rows only.
SERIES_FILTERS = (
    "protocol",
    "method",
    "endpoint",
    "status_code",
    "workspace_id",
    "environment",
    "test_run",
    "source",
    "instance",
)
FILTER_PARAMS = (*SERIES_FILTERS, "client")
# What a route that reads the series dimensions accepts (everything but `client`).
COMMON_PARAMS = frozenset({*TIME_PARAMS, *FILTER_PARAMS} - {"client"})
GROUP_BYS = (
    "protocol",
    "endpoint",
    "method",
    "status_class",
    "workspace_id",
    "environment",
    "test_run",
    "instance",
)
_CLIENT_ROUTES = "client-analysis, errors, recent-requests and exports of dataset=errors|clients"
_MAX_TEXT = 512  # longest filter value accepted (everything a request carries is capped)
_LIST_FILTERS = ("protocol", "method", "source", "instance")  # comma lists allowed


class ParamError(ValueError):
    """A query parameter is wrong or not accepted by the route; the API answers 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """`status_code`: exact codes and whole classes (5 for `5xx`); matches if either matches."""

    codes: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()

    def matches(self, code: int) -> bool:
        """True when a status code passes this filter."""
        return code in self.codes or code // 100 in self.classes


@dataclass(frozen=True, slots=True)
class QueryParams:
    """One request's validated parameters. Filters that are None do not filter."""

    start: int  # window start, Unix seconds, aligned to a minute
    end: int  # window end (exclusive), aligned to a minute; end > start
    granularity: str  # resolved: minute | hour | day
    protocol: tuple[str, ...] | None = None
    method: tuple[str, ...] | None = None
    endpoint: str | None = None  # exact template, or a glob when it contains '*'
    status_code: StatusFilter | None = None
    workspace_id: str | None = None
    environment: str | None = None
    test_run: str | None = None
    source: tuple[str, ...] | None = None
    instance: tuple[str, ...] | None = None
    client: str | None = None
    limit: int = 100
    sort: str | None = None
    group_by: str | None = None
    extras: dict[str, str] = field(default_factory=dict)  # route-specific parameters, raw

    @property
    def step(self) -> int:
        """Bucket width in seconds for the resolved granularity."""
        return GRANULARITIES[self.granularity]

    @property
    def seconds(self) -> int:
        """Length of the window in seconds."""
        return self.end - self.start

    @property
    def endpoint_is_glob(self) -> bool:
        """True when the endpoint filter is a glob pattern."""
        return self.endpoint is not None and "*" in self.endpoint

    def has_series_filter(self) -> bool:
        """True when any filter on the `series` dimensions is set."""
        return any(getattr(self, name) is not None for name in SERIES_FILTERS)


def parse_params(
    query: Mapping[str, Any],
    *,
    allowed: Collection[str],
    now: float,
    config: AnalyticsConfig | None = None,
    sorts: Collection[str] = (),
    group_bys: Collection[str] = (),
    extras: Collection[str] = (),
    default_duration: int = 3600,
) -> QueryParams:
    """Validate `query` (request.query_params, or a plain dict) for a route accepting `allowed`.

    `allowed` names the common parameters the route honours (see COMMON_PARAMS; add "limit",
    "sort", "group_by", "client" where they apply); `sorts`/`group_bys` list accepted values (the
    first sort is the default); `extras` names route-specific parameters returned raw in
    `QueryParams.extras`. Raises ParamError naming the first bad parameter.
    """
    config = config or AnalyticsConfig()
    accepted = set(allowed) | set(extras)
    raw = _single_values(query)
    for name in raw:
        if name in accepted:
            continue
        if name == "client":
            raise ParamError(
                "client", f"clients are not a dimension of this route; it applies to {_CLIENT_ROUTES}"
            )
        if name in COMMON_PARAMS or name in ("limit", "sort", "group_by"):
            raise ParamError(name, f"not supported by this route; it accepts: {', '.join(sorted(accepted))}")
        raise ParamError(name, f"unknown parameter; this route accepts: {', '.join(sorted(accepted))}")

    start, end = _window(raw, now, default_duration)
    granularity = _granularity(raw.get("granularity", "auto"), end - start)
    values: dict[str, Any] = {}
    for name in _LIST_FILTERS:
        if name in raw:
            values[name] = _text_list(name, raw[name])
    for name in ("workspace_id", "environment", "test_run", "client", "endpoint"):
        if name in raw:
            values[name] = _text(name, raw[name])
    if "status_code" in raw:
        values["status_code"] = _status(raw["status_code"])
    if "limit" in raw:
        values["limit"] = _limit(raw["limit"], config.max_query_results)
    else:
        values["limit"] = min(100, config.max_query_results)
    if sorts:
        values["sort"] = _choice("sort", raw.get("sort", next(iter(sorts))), sorts)
    if "group_by" in raw:
        values["group_by"] = _choice("group_by", raw["group_by"], group_bys or GROUP_BYS)
    extra = {name: raw[name] for name in extras if name in raw}
    return QueryParams(start=start, end=end, granularity=granularity, extras=extra, **values)


def _single_values(query: Mapping[str, Any]) -> dict[str, str]:
    """One string per name; a name given twice is an error (which one would win is a guess)."""
    out: dict[str, str] = {}
    multi = getattr(query, "getlist", None)
    for name in query:
        if multi is not None:
            items = multi(name)
            if len(items) > 1:
                raise ParamError(name, "given more than once; pass one value (comma lists where accepted)")
            value: Any = items[0] if items else ""
        else:
            value = query[name]
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool) or value is None:
            raise ParamError(str(name), "expected a string or a number")
        out[str(name)] = str(value).strip()
    return out


def _parse_time(name: str, value: str) -> float:
    """Unix seconds (int or float) or ISO 8601; naive ISO times are UTC."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0 or number > 32503680000:  # year 3000
            raise ParamError(name, "expected Unix seconds between 0 and 32503680000 or ISO 8601")
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(
            name, "expected Unix seconds or an ISO 8601 time such as 2024-05-01T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _ceil_minute(ts: float) -> int:
    return math.ceil(ts / 60.0) * 60


def _window(raw: Mapping[str, str], now: float, default_duration: int) -> tuple[int, int]:
    has_start, has_end, has_duration = "start_time" in raw, "end_time" in raw, "duration" in raw
    if has_start and has_end and has_duration:
        raise ParamError("duration", "cannot be combined with both start_time and end_time")
    duration = float(default_duration)
    if has_duration:
        try:
            duration = float(raw["duration"])
        except ValueError:
            raise ParamError("duration", "expected a number of seconds") from None
        if not math.isfinite(duration) or duration <= 0 or duration > MAX_WINDOW_SECONDS:
            raise ParamError("duration", f"expected seconds > 0 and <= {MAX_WINDOW_SECONDS}")
    if has_start and not has_end and has_duration:
        start_f = _parse_time("start_time", raw["start_time"])
        end_f = start_f + duration
    else:
        end_f = _parse_time("end_time", raw["end_time"]) if has_end else now
        start_f = _parse_time("start_time", raw["start_time"]) if has_start else end_f - duration
    start, end = _ceil_minute(max(start_f, 0.0)), _ceil_minute(end_f)
    if start_f >= end_f:
        raise ParamError("start_time", "must be before end_time")
    if end - start > MAX_WINDOW_SECONDS:
        raise ParamError("start_time", f"the window may span at most {MAX_WINDOW_SECONDS} seconds")
    if start == end:  # both ends inside one minute: widen to that minute rather than answer nothing
        end = start + 60
    return start, end


def _granularity(value: str, seconds: int) -> str:
    if value == "auto":
        for name in ("day", "hour"):
            if seconds // GRANULARITIES[name] >= AUTO_MIN_POINTS:
                return name
        return "minute"
    if value not in GRANULARITIES:
        raise ParamError("granularity", "expected one of minute, hour, day, auto")
    buckets = math.ceil(seconds / GRANULARITIES[value])
    if buckets > MAX_BUCKETS:
        raise ParamError(
            "granularity",
            f"{value} gives {buckets} buckets over this window (at most {MAX_BUCKETS}); use a coarser one",
        )
    return value


def _text(name: str, value: str) -> str:
    if not value:
        raise ParamError(name, "must not be empty")
    if len(value) > _MAX_TEXT:
        raise ParamError(name, f"longer than {_MAX_TEXT} characters")
    return value


def _text_list(name: str, value: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(part.strip() for part in _text(name, value).split(",")))
    if any(not item for item in items):
        raise ParamError(name, "empty item in the comma list")
    if name == "method":
        items = tuple(item.upper() for item in items)
    return items


def _status(value: str) -> StatusFilter:
    codes: list[int] = []
    classes: list[int] = []
    for part in _text("status_code", value).split(","):
        item = part.strip().lower()
        if len(item) == 3 and item.endswith("xx") and item[0] in "12345":
            classes.append(int(item[0]))
        elif item.isdigit() and 100 <= int(item) <= 599:
            codes.append(int(item))
        else:
            raise ParamError(
                "status_code",
                f"{part.strip()!r} is not a code (100-599), a class such as 5xx, or a comma list of them",
            )
    return StatusFilter(codes=tuple(dict.fromkeys(codes)), classes=tuple(dict.fromkeys(classes)))


def _limit(value: str, cap: int) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise ParamError("limit", f"expected an integer from 1 to {cap}") from None
    if limit < 1:
        raise ParamError("limit", f"expected an integer from 1 to {cap}")
    return min(limit, cap)  # capped, as documented, rather than refused


def _choice(name: str, value: str, choices: Collection[str]) -> str:
    if value not in choices:
        raise ParamError(name, f"expected one of {', '.join(choices)}")
    return value
