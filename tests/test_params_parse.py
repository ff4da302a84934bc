"""params.parse_params: windows, granularity, filters, limits, and every bad value -> ParamError."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams as StarletteQuery

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.params import COMMON_PARAMS, ParamError, StatusFilter, parse_params

NOW = 1_700_000_030.0  # 22:13:50 UTC, not minute-aligned on purpose
ALL = COMMON_PARAMS | {"limit", "sort", "group_by"}


def parse(query: dict | str, allowed=ALL, **kw):
    q = StarletteQuery(query) if isinstance(query, str) else query
    return parse_params(q, allowed=allowed, now=NOW, **kw)


def test_default_window_is_last_hour_rounded_up_to_minutes():
    p = parse({})
    assert p.end == 1_700_000_040 and p.start == p.end - 3600
    assert p.granularity == "minute" and p.limit == 100 and p.sort is None


def test_start_end_unix_and_iso():
    p = parse({"start_time": "1700000000", "end_time": "2023-11-15T00:00:00Z"})
    assert p.start == 1_700_000_040  # 22:13:20 rounds up: minute 22:13 starts before the window
    assert p.end == 1_700_006_400
    p2 = parse({"start_time": "2023-11-14T00:00:00+01:00", "end_time": "2023-11-14T00:00:00"})
    assert p2.end - p2.start == 3600


def test_duration_from_start_and_from_end():
    assert parse({"duration": "7200"}).seconds == 7200
    p = parse({"start_time": "1699999200", "duration": "600"})
    assert (p.start, p.end) == (1_699_999_200, 1_699_999_800)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(3600, "minute"), (86400, "hour"), (7 * 86400, "hour"), (30 * 86400, "day"), (365 * 86400, "day")],
)
def test_auto_granularity(seconds, expected):
    assert parse({"duration": str(seconds)}).granularity == expected


def test_filters_parsed():
    p = parse(
        "protocol=http,graphql&method=get&endpoint=/api/*&status_code=2xx,404&workspace_id=w"
        "&environment=e&test_run=t1&source=middleware&instance=a:1,b:2&limit=5&group_by=protocol",
        sorts=("requests", "errors"),
    )
    assert p.protocol == ("http", "graphql") and p.method == ("GET",)
    assert p.endpoint == "/api/*" and p.endpoint_is_glob
    assert p.status_code == StatusFilter(codes=(404,), classes=(2,))
    assert p.status_code.matches(204) and p.status_code.matches(404) and not p.status_code.matches(500)
    assert (p.workspace_id, p.environment, p.test_run) == ("w", "e", "t1")
    assert p.instance == ("a:1", "b:2") and p.limit == 5 and p.group_by == "protocol" and p.sort == "requests"
    assert p.has_series_filter()


def test_limit_capped_by_config():
    assert parse({"limit": "50000"}, config=AnalyticsConfig(max_query_results=500)).limit == 500


def test_plain_dict_input_for_websocket_configs():
    p = parse({"duration": 600, "protocol": ["http", "websocket"], "status_code": 500})
    assert p.seconds == 600 and p.protocol == ("http", "websocket") and p.status_code.codes == (500,)


def test_extras_returned_raw():
    p = parse({"dataset": "errors"}, extras=("dataset", "format"))
    assert p.extras == {"dataset": "errors"}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start_time=yesterday", "start_time"),
        ("end_time=2024-13-01", "end_time"),
        ("start_time=1700000000&end_time=1690000000", "start_time"),
        ("start_time=1800000000", "start_time"),  # after now
        ("duration=0", "duration"),
        ("duration=-5", "duration"),
        ("duration=abc", "duration"),
        ("duration=nan", "duration"),
        ("start_time=1&end_time=2&duration=3", "duration"),
        ("granularity=week", "granularity"),
        ("granularity=minute&duration=31536000", "granularity"),
        ("status_code=600", "status_code"),
        ("status_code=6xx", "status_code"),
        ("status_code=2xx,,404", "status_code"),
        ("status_code=abc", "status_code"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("sort=bogus", "sort"),
        ("group_by=client_ip", "group_by"),
        ("protocol=", "protocol"),
        ("protocol=http,,ws", "protocol"),
        ("endpoint=" + "x" * 600, "endpoint"),
        ("bogus=1", "bogus"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_bad_values_name_the_parameter(query, param):
    with pytest.raises(ParamError) as err:
        parse(query, sorts=("requests", "errors"))
    assert err.value.param == param
    assert str(err.value).startswith(param + ": ")


def test_client_where_not_a_dimension_says_where_it_applies():
    with pytest.raises(ParamError) as err:
        parse({"client": "1.2.3.4"})
    assert err.value.param == "client" and "client-analysis" in err.value.message
    assert parse({"client": "1.2.3.4"}, allowed=ALL | {"client"}).client == "1.2.3.4"


def test_parameter_the_route_cannot_honour():
    with pytest.raises(ParamError) as err:
        parse({"limit": "5"}, allowed=COMMON_PARAMS)
    assert err.value.param == "limit" and "not supported" in err.value.message
