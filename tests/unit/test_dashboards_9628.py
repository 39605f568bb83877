"""Dashboard 9628 as pgmon writes it: adapted to pgmon's labels, refused when it is not the one pgmon knows."""

import copy
import hashlib
import json
import re

import pytest
import requests
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tasks.dashboard import (
    REMOVED_PANEL_TYPES,
    SCHEMA_VERSION,
    adapt_dashboard_9628,
    current_grafana_dashboard,
    load_dashboard_9628,
    panels_of,
    scope_selectors,
    with_pg17_fallback,
)
from tasks.settings import DeployError, build_settings

from .conftest import ENVIRON, FIXTURES, VARIABLE, exprs, group_data, pgmon_query_series

SELECTOR = re.compile(r'(?<![\w:"])((?:pg|process)_[\w:]*)(\{[^}]*\})?')


def test_9628_picks_a_server_then_a_database_by_pgmons_labels(dashboard_9628):
    published = copy.deepcopy(dashboard_9628)
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    assert dashboard_9628 == published  # the published JSON (the cache) is left as it is
    variables = {v["name"]: v for v in adapted["templating"]["list"]}
    assert list(variables) == [
        "interval",
        "server",
        "instance",
        "datname",
        "mode",
    ]  # no Kubernetes namespace
    assert variables["server"]["query"] == 'label_values(pg_up{job="postgres"}, server)'
    assert variables["instance"]["label"] == "Database"
    assert (
        variables["instance"]["query"]
        == 'label_values(pg_up{job="postgres", server="$server"}, instance)'
    )
    assert (
        variables["datname"]["hide"] == 2 and "pgmon_database_info" in variables["datname"]["query"]
    )
    assert "pgmon" in adapted["tags"] and any(
        link.get("tags") == ["pgmon"] for link in adapted["links"]
    )


def test_9628_queries_are_scoped_by_server_or_by_the_databases_exporter(dashboard_9628):
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    defined = {v["name"] for v in adapted["templating"]["list"]}
    selectors = 0
    for title, expr in exprs(adapted):
        assert "release" not in expr and "kubernetes_namespace" not in expr, title
        assert set(VARIABLE.findall(expr)) <= defined, (title, expr)
        for name, matchers in SELECTOR.findall(expr):
            selectors += 1
            scope = 'instance="$instance"' if name.startswith("process_") else 'server="$server"'
            assert matchers.startswith("{" + scope), (title, expr)
            assert matchers.count("instance=") == (1 if name.startswith("process_") else 0), (
                title,
                expr,
            )
            if name.startswith("pg_stat_bgwriter_"):
                assert name.endswith("_total"), (title, expr)
    assert selectors >= 40


def test_9628_queries_over_moved_counters_fall_back_to_postgresql_17_names(dashboard_9628):
    adapted = list(exprs(adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")))
    assert dict(adapted)["Checkpoint Stats"] == (
        '(irate(pg_stat_bgwriter_checkpoint_sync_time_total{server="$server"}[5m])) or '
        '(irate(pg_stat_checkpointer_sync_time_total{server="$server"}[5m]))'
    )
    fallbacks = [expr for _, expr in adapted if "pg_stat_checkpointer_" in expr]
    assert len(fallbacks) == 3  # buffers written, write time, sync time
    assert all(expr.count(" or ") == 1 for expr in fallbacks)
    buffers = [expr for title, expr in adapted if title == "Buffers (bgwriter)"]
    assert (
        '(irate(pg_stat_bgwriter_buffers_backend_total{server="$server"}[5m])) or '
        '(irate(pgmon_stat_io_backend_writes{server="$server"}[5m]))'
    ) in buffers
    assert (
        '(irate(pg_stat_bgwriter_buffers_backend_fsync_total{server="$server"}[5m])) or '
        '(irate(pgmon_stat_io_backend_fsyncs{server="$server"}[5m]))'
    ) in buffers


def test_9628_fallbacks_read_series_pgmons_server_query_produces(dashboard_9628):
    produced = pgmon_query_series()
    adapted = json.dumps(adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628"))
    assert {"pgmon_stat_io_backend_writes", "pgmon_stat_io_backend_fsyncs"} <= produced
    assert set(re.findall(r"\b(pgmon_[a-z_]+)\{", adapted)) <= produced


def test_9628_adaptation_refuses_a_dashboard_it_does_not_know(dashboard_9628):
    other = copy.deepcopy(dashboard_9628)
    other["templating"]["list"] = [v for v in other["templating"]["list"] if v["name"] != "release"]
    with pytest.raises(
        DeployError,
        match=r"pgmon_dashboard_9628.file: .*no template variable\(s\) release.*revision 8",
    ):
        adapt_dashboard_9628(other, "pgmon_dashboard_9628.file")
    unreadable = copy.deepcopy(dashboard_9628)
    unreadable["panels"][1]["targets"][0]["expr"] = "pg_static{instance='$instance'}"
    with pytest.raises(DeployError, match=r"panel 'Version': cannot read the label matchers"):
        adapt_dashboard_9628(unreadable, "pgmon_dashboard_9628.revision")
    leftover = copy.deepcopy(dashboard_9628)
    leftover["panels"][1]["title"] = "Version in $namespace"
    with pytest.raises(DeployError, match=r"still refers to \$namespace"):
        adapt_dashboard_9628(leftover, "pgmon_dashboard_9628.revision")


def serve_download(monkeypatch, body: bytes) -> list[str]:
    """requests.get answering every URL with ``body``; returns the URLs asked for."""
    downloads = []

    class Response:
        content = body

        def raise_for_status(self):
            pass

    monkeypatch.setattr(requests, "get", lambda url, timeout: downloads.append(url) or Response())
    return downloads


def test_9628_download_is_cached_byte_for_byte_and_served_adapted(
    dashboard_9628, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    published = json.dumps(dashboard_9628, indent=1).encode()
    downloads = serve_download(monkeypatch, published)
    settings = build_settings(
        group_data(pgmon_dashboard_9628={"url": "http://127.0.0.1:9/{revision}"}), ENVIRON
    )
    first, second = load_dashboard_9628(settings), load_dashboard_9628(settings)
    assert downloads == ["http://127.0.0.1:9/8"] and first == second
    assert "server" in {v["name"] for v in first["templating"]["list"]}
    (cached,) = (tmp_path / "pgmon").glob("dashboard-9628-r8-*.json")
    assert cached.read_bytes() == published  # so sha256sum of the cache is the value to pin


def test_9628_other_bytes_than_the_pinned_sha256_are_refused(dashboard_9628, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    published = json.dumps(dashboard_9628).encode()
    pinned = hashlib.sha256(published).hexdigest()
    serve_download(
        monkeypatch, published.replace(b"PostgreSQL Database", b"PostgreSQL Database (changed)")
    )
    data = group_data(
        pgmon_dashboard_9628={"url": "http://127.0.0.1:9/{revision}", "sha256": pinned}
    )
    with pytest.raises(
        DeployError,
        match=rf"pgmon_dashboard_9628.sha256: http://127.0.0.1:9/8 has sha256 \w{{64}}, "
        rf"not the pinned {pinned}",
    ):
        load_dashboard_9628(build_settings(data, ENVIRON))
    assert not list((tmp_path / "pgmon").glob("*.json"))  # what was refused is not cached

    serve_download(monkeypatch, published)
    assert load_dashboard_9628(build_settings(data, ENVIRON))["templating"]
    (cached,) = (tmp_path / "pgmon").glob("dashboard-9628-r8-*.json")
    cached.write_bytes(
        cached.read_bytes() + b"\n"
    )  # a cache edited since, by hand or by an older pgmon
    with pytest.raises(DeployError, match=rf"{cached} has sha256 .*delete the cached copy"):
        load_dashboard_9628(build_settings(data, ENVIRON))

    other_file = tmp_path / "9628.json"
    other_file.write_bytes(published + b" ")
    with pytest.raises(DeployError, match=rf"pgmon_dashboard_9628.sha256: {other_file} has sha256"):
        load_dashboard_9628(
            build_settings(
                group_data(pgmon_dashboard_9628={"file": str(other_file), "sha256": pinned}),
                ENVIRON,
            )
        )


def test_9628_sha256_must_be_written_as_sha256sum_prints_it():
    with pytest.raises(
        DeployError, match=r"pgmon_dashboard_9628.sha256: .*64 lowercase hex digits"
    ):
        build_settings(group_data(pgmon_dashboard_9628={"sha256": "ABC"}), ENVIRON)


def test_9628_from_a_file_is_adapted_too():
    settings = build_settings(
        group_data(pgmon_dashboard_9628={"file": str(FIXTURES / "dashboard-9628.json")}), ENVIRON
    )
    assert not any("$release" in expr for _, expr in exprs(load_dashboard_9628(settings)))


@pytest.mark.parametrize(
    "change",
    [
        {"templating": []},
        {"panels": "x"},
        {"templating": {"list": [1]}},
        {"__inputs": ["DS_PROMETHEUS"]},
    ],
)
def test_a_malformed_dashboard_file_is_refused_naming_the_field(dashboard_9628, tmp_path, change):
    path = tmp_path / "9628.json"
    path.write_text(json.dumps({**dashboard_9628, **change}))
    settings = build_settings(group_data(pgmon_dashboard_9628={"file": str(path)}), ENVIRON)
    with pytest.raises(DeployError, match="^pgmon_dashboard_9628"):
        load_dashboard_9628(settings)


# ---------------------------------------------------------------- panels for Grafana 12

ANGULAR_ONLY_KEYS = {
    "yaxes",
    "xaxis",
    "yaxis",
    "lines",
    "bars",
    "points",
    "fill",
    "linewidth",
    "stack",
    "legend",
    "tooltip",
    "seriesOverrides",
    "aliasColors",
    "nullPointMode",
    "renderer",
    "format",
    "valueName",
    "valueMaps",
    "rangeMaps",
    "mappingType",
    "sparkline",
    "gauge",
    "colors",
    "colorBackground",
    "colorValue",
    "prefix",
    "postfix",
    "thresholds",
}


def by_id(dashboard: dict) -> dict[int, dict]:
    return {panel["id"]: panel for panel in panels_of(dashboard["panels"])}


def adapted_with(dashboard_9628: dict, panel_id: int, **angular) -> dict:
    """The adapted panel ``panel_id`` of 9628 after giving it ``angular`` options, as a Grafana 6 export
    writes them (the fixture holds the published queries and layout, not every panel option)."""
    published = copy.deepcopy(dashboard_9628)
    by_id(published)[panel_id].update(angular)
    return by_id(adapt_dashboard_9628(published, "pgmon_dashboard_9628"))[panel_id]


def test_9628_panels_become_the_types_grafana_12_has(dashboard_9628):
    published = by_id(dashboard_9628)
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    assert adapted["schemaVersion"] == SCHEMA_VERSION == 42
    converted = {"graph": "timeseries", "singlestat": "stat", "row": "row"}
    for panel_id, panel in by_id(adapted).items():
        assert panel["type"] == converted[published[panel_id]["type"]], panel["title"]
        assert panel["type"] not in REMOVED_PANEL_TYPES
        assert not ANGULAR_ONLY_KEYS & set(panel), (panel["title"], ANGULAR_ONLY_KEYS & set(panel))
        if panel["type"] != "row":
            assert set(panel["fieldConfig"]) == {"defaults", "overrides"}, panel["title"]
            assert isinstance(panel["options"], dict), panel["title"]
    types = [p["type"] for p in by_id(adapted).values()]
    assert (types.count("timeseries"), types.count("stat"), types.count("row")) == (17, 15, 3)
    variables = adapted["templating"]["list"]
    assert not any({"tags", "useTags", "tagsQuery"} & set(v) for v in variables)
    builtin = adapted["annotations"]["list"][0]["datasource"]
    assert builtin == {"type": "datasource", "uid": "grafana"}


def test_9628_conversion_keeps_title_layout_data_source_and_adapted_queries(dashboard_9628):
    published = by_id(dashboard_9628)
    ref = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel_id, panel in by_id(
        adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    ).items():
        before = published[panel_id]
        assert (panel["title"], panel["gridPos"]) == (before["title"], before["gridPos"])
        if panel["type"] == "row":
            continue
        assert before["datasource"] == "${DS_PROMETHEUS}" and panel["datasource"] == ref
        assert [t["datasource"] for t in panel["targets"]] == [ref] * len(before["targets"])
        rewritten = [
            {**target, "expr": with_pg17_fallback(scope_selectors(target["expr"]))}
            for target in before["targets"]
        ]
        kept = [{k: v for k, v in t.items() if k != "datasource"} for t in panel["targets"]]
        assert kept == rewritten, panel["title"]


def test_9628_graph_with_a_byte_axis_stacked_becomes_a_stacked_timeseries_in_bytes(dashboard_9628):
    panel = adapted_with(
        dashboard_9628,
        34,  # Temp File (Bytes)
        yaxes=[
            {
                "format": "bytes",
                "label": "spilled",
                "logBase": 1,
                "min": "0",
                "max": None,
                "show": True,
                "decimals": 1,
            },
            {
                "format": "short",
                "label": None,
                "logBase": 1,
                "min": None,
                "max": None,
                "show": False,
            },
        ],
        lines=True,
        fill=2,
        linewidth=2,
        points=False,
        stack=True,
        nullPointMode="null as zero",
        legend={
            "show": True,
            "alignAsTable": True,
            "rightSide": True,
            "values": True,
            "current": True,
            "max": True,
            "avg": False,
            "hideZero": True,
        },
        tooltip={"shared": True, "sort": 2, "value_type": "individual"},
    )
    assert panel["type"] == "timeseries"
    assert panel["fieldConfig"]["defaults"] == {
        "unit": "bytes",
        "decimals": 1,
        "min": 0,
        "custom": {
            "axisPlacement": "auto",
            "axisLabel": "spilled",
            "drawStyle": "line",
            "showPoints": "never",
            "lineWidth": 2,
            "fillOpacity": 20,
            "spanNulls": False,
            "stacking": {"mode": "normal", "group": "A"},
        },
        "nullValueMode": "null as zero",
    }
    assert panel["options"] == {
        "legend": {
            "displayMode": "table",
            "showLegend": True,
            "placement": "right",
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    assert panel["fieldConfig"]["overrides"] == [
        {
            "matcher": {
                "id": "byValue",
                "options": {"reducer": "allIsZero", "op": "gte", "value": 0},
            },
            "properties": [
                {"id": "custom.hideFrom", "value": {"tooltip": True, "viz": False, "legend": True}}
            ],
        }
    ]


def test_9628_graph_series_overrides_and_colours_become_field_overrides(dashboard_9628):
    panel = adapted_with(
        dashboard_9628,
        23,  # Transactions: commits and rollbacks
        yaxes=[
            {"format": "ops", "show": True, "logBase": 1, "min": None, "max": None},
            {"format": "percent", "show": True, "logBase": 2, "min": "0", "max": "100"},
        ],
        aliasColors={"shop commits": "green", "unused": ""},
        seriesOverrides=[
            {
                "$$hashKey": "object:7",
                "alias": "/rollbacks$/",
                "yaxis": 2,
                "bars": True,
                "color": "#F2495C",
                "dashes": True,
                "zindex": 3,
            },
            {"alias": "", "fill": 5},  # no alias: the graph's editor row left empty
        ],
    )
    assert panel["fieldConfig"]["defaults"]["unit"] == "ops"
    assert panel["fieldConfig"]["overrides"] == [
        {
            "matcher": {"id": "byName", "options": "shop commits"},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}}],
        },
        {
            "matcher": {"id": "byRegexp", "options": "/rollbacks$/"},
            "properties": [
                {"id": "unit", "value": "percent"},
                {"id": "min", "value": 0},
                {"id": "max", "value": 100},
                {"id": "custom.scaleDistribution", "value": {"type": "log", "log": 2}},
                {"id": "custom.drawStyle", "value": "bars"},
                {"id": "custom.fillOpacity", "value": 100},
                {"id": "color", "value": {"fixedColor": "#F2495C", "mode": "fixed"}},
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            ],
        },
    ]


def test_9628_singlestat_thresholds_value_maps_and_sparkline_become_a_stat(dashboard_9628):
    colors = ["#299c46", "rgba(237, 129, 40, 0.89)", "#d44a3a"]
    panel = adapted_with(
        dashboard_9628,
        7,  # Max Connections
        format="none",
        valueName="current",
        decimals=0,
        thresholds="80, 90",
        colors=colors,
        colorBackground=True,
        colorValue=False,
        sparkline={"show": True, "full": False, "lineColor": "rgb(31, 120, 193)"},
        mappingType=1,
        valueMaps=[
            {"value": "null", "op": "=", "text": "N/A"},
            {"value": "100", "op": "=", "text": "default"},
            {"value": "2", "op": "=", "text": "95 (two)"},
        ],
        rangeMaps=[{"from": "0", "to": "10", "text": "few"}],
        prefix="",
        postfix="",
        gauge={"show": False, "minValue": 0, "maxValue": 100},
    )
    assert panel["type"] == "stat"
    assert panel["options"] == {
        "reduceOptions": {"calcs": ["lastNotNull"]},
        "orientation": "horizontal",
        "graphMode": "area",
        "colorMode": "background",
    }
    assert panel["fieldConfig"] == {
        "defaults": {
            "unit": "none",
            "nullValueMode": "connected",
            "decimals": 0,
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"value": None, "color": colors[0]},
                    {"value": 80, "color": colors[1]},
                    {"value": 90, "color": colors[2]},
                ],
            },
            "mappings": [
                {"type": "special", "options": {"match": "null", "result": {"text": "N/A"}}},
                {"type": "value", "options": {"100": {"text": "default"}}},
                # the colour the thresholds give the text read as a number, as Grafana does
                {"type": "value", "options": {"2": {"text": "95 (two)", "color": colors[2]}}},
            ],
        },
        "overrides": [],
    }


def test_9628_singlestat_showing_a_name_with_a_gauge_range_becomes_a_stat(dashboard_9628):
    panel = adapted_with(
        dashboard_9628,
        2,  # Version: the series name (legendFormat short_version)
        valueName="name",
        format="percent",
        nullText="unknown",
        thresholds="",
        sparkline={"show": True, "lineColor": "#8AB8FF"},
        gauge={"show": True, "minValue": 10, "maxValue": 20},
        mappingType=2,
        rangeMaps=[
            {"from": "null", "to": "null", "text": "N/A"},
            {"from": "1", "to": "5", "text": "low"},
        ],
    )
    assert panel["options"] == {
        "reduceOptions": {"calcs": ["mean"]},
        "orientation": "horizontal",
        "graphMode": "area",
        "colorMode": "none",
        "textMode": "name",
    }
    assert panel["fieldConfig"]["defaults"] == {
        "unit": "percent",
        "nullValueMode": "connected",
        "noValue": "unknown",
        "mappings": [
            {"type": "special", "options": {"match": "null", "result": {"text": "N/A"}}},
            {"type": "range", "options": {"from": 1, "to": 5, "result": {"text": "low"}}},
        ],
        "min": 10,
        "max": 20,
        "color": {"mode": "fixed", "fixedColor": "#8AB8FF"},
    }
    percent = adapted_with(dashboard_9628, 2, format="percentunit")
    assert (
        percent["fieldConfig"]["defaults"]["min"],
        percent["fieldConfig"]["defaults"]["max"],
    ) == (
        0,
        1,
    )


@pytest.mark.parametrize(
    "change, refusal",
    [
        ({"type": "table-old"}, r"panel 'Max Connections' is a table-old panel"),
        ({"type": "grafana-piechart-panel"}, r"is a grafana-piechart-panel panel"),
        ({"type": "graph", "xaxis": {"mode": "series"}}, r"x axis mode 'series'"),
        ({"type": "graph", "timeRegions": [{"from": "08:00"}]}, r"time regions"),
    ],
)
def test_9628_panel_grafana_would_not_make_a_timeseries_or_stat_is_refused(
    dashboard_9628, change, refusal
):
    published = copy.deepcopy(dashboard_9628)
    by_id(published)[7].update(change)
    with pytest.raises(DeployError, match=rf"^pgmon_dashboard_9628.file: .*{refusal}"):
        adapt_dashboard_9628(published, "pgmon_dashboard_9628.file")


# Angular options as a Grafana 6 export writes them: each drawn from what its editor offered.
NUMBERS = st.one_of(st.none(), st.integers(-5, 1000), st.sampled_from(["0", "1.5", "", "auto"]))
UNITS = st.sampled_from(["short", "bytes", "percent", "percentunit", "s", "ops", "none"])
AXES = st.fixed_dictionaries(
    {"show": st.booleans(), "format": UNITS},
    optional={
        "logBase": st.sampled_from([1, 2, 10, 32]),
        "min": NUMBERS,
        "max": NUMBERS,
        "decimals": st.one_of(st.none(), st.integers(0, 4)),
        "label": st.one_of(st.none(), st.text(max_size=8)),
    },
)
ALIASES = st.sampled_from(["shop commits", "/rollbacks$/", "#re#", "Virtual Mem"])
SERIES_OVERRIDES = st.fixed_dictionaries(
    {"alias": st.one_of(st.just(""), ALIASES)},
    optional={
        "yaxis": st.sampled_from([1, 2]),
        "fill": st.integers(0, 10),
        "fillBelowTo": ALIASES,
        "fillGradient": st.integers(0, 10),
        "points": st.booleans(),
        "bars": st.booleans(),
        "lines": st.booleans(),
        "linewidth": st.integers(0, 10),
        "pointradius": st.integers(0, 10),
        "dashes": st.booleans(),
        "dashLength": st.integers(1, 20),
        "stack": st.one_of(st.booleans(), st.sampled_from(["A", "B"])),
        "color": st.sampled_from(["#F2495C", "green"]),
        "transform": st.sampled_from(["negative-Y", "constant"]),
        "zindex": st.integers(-3, 3),
    },
)
GRAPH_THRESHOLDS = st.fixed_dictionaries(
    {"value": st.integers(-10, 100), "op": st.sampled_from(["gt", "lt"])},
    optional={
        "fill": st.booleans(),
        "line": st.booleans(),
        "colorMode": st.sampled_from(["critical", "warning", "custom", "ok"]),
        "fillColor": st.sampled_from(["#F2495C", "blue"]),
    },
)
LEGEND_KEYS = ["show", "values", "min", "max", "avg", "current", "total", "alignAsTable"]
GRAPH_OPTIONS = {
    "yaxes": st.lists(AXES, max_size=2),
    "xaxis": st.fixed_dictionaries({"mode": st.just("time"), "show": st.booleans()}),
    "lines": st.booleans(),
    "bars": st.booleans(),
    "points": st.booleans(),
    "fill": st.integers(0, 10),
    "fillGradient": st.integers(0, 10),
    "linewidth": st.integers(0, 10),
    "pointradius": st.integers(0, 10),
    "dashes": st.booleans(),
    "stack": st.booleans(),
    "steppedLine": st.booleans(),
    "nullPointMode": st.sampled_from(["null", "connected", "null as zero"]),
    "legend": st.dictionaries(
        st.sampled_from([*LEGEND_KEYS, "rightSide", "hideZero", "hideEmpty"]), st.booleans()
    ),
    "tooltip": st.fixed_dictionaries(
        {}, optional={"shared": st.booleans(), "sort": st.integers(0, 2)}
    ),
    "aliasColors": st.dictionaries(ALIASES, st.sampled_from(["", "red", "#73BF69"])),
    "seriesOverrides": st.lists(SERIES_OVERRIDES, max_size=3),
    "thresholds": st.lists(GRAPH_THRESHOLDS, max_size=3),
    "renderer": st.just("flot"),
}
SINGLESTAT_OPTIONS = {
    "format": UNITS,
    "valueName": st.sampled_from(
        ["min", "max", "avg", "current", "total", "name", "first", "delta", "diff", "range"]
        + ["last_time"]
    ),
    "decimals": st.one_of(st.none(), st.integers(0, 4)),
    "thresholds": st.one_of(
        st.just(""),
        st.lists(st.integers(0, 100), max_size=3).map(lambda levels: ",".join(map(str, levels))),
    ),
    "colors": st.lists(
        st.sampled_from(["#299c46", "rgba(237, 129, 40, 0.89)", "#d44a3a"]), max_size=4
    ),
    "colorBackground": st.booleans(),
    "colorValue": st.booleans(),
    "sparkline": st.fixed_dictionaries(
        {"show": st.booleans()}, optional={"lineColor": st.sampled_from(["", "rgb(31, 120, 193)"])}
    ),
    "gauge": st.fixed_dictionaries(
        {"show": st.booleans(), "minValue": st.integers(0, 10), "maxValue": st.integers(50, 100)}
    ),
    "mappingType": st.sampled_from([1, 2]),
    "valueMaps": st.lists(
        st.fixed_dictionaries(
            {
                "value": st.sampled_from(["null", "0", "1", "15"]),
                "op": st.just("="),
                "text": st.sampled_from(["N/A", "down", "85", "3 days"]),
            }
        ),
        max_size=3,
    ),
    "rangeMaps": st.lists(
        st.fixed_dictionaries(
            {
                "from": st.sampled_from(["null", "0", "10"]),
                "to": st.sampled_from(["null", "5", "99"]),
                "text": st.sampled_from(["N/A", "low", "50"]),
            }
        ),
        max_size=3,
    ),
    "nullText": st.one_of(st.none(), st.just("none")),
    "nullPointMode": st.sampled_from(["connected", "null"]),
    "tableColumn": st.sampled_from(["", "Value"]),
    "prefix": st.sampled_from(["", "$"]),
    "postfix": st.sampled_from(["", " ms"]),
}
QUERY = {"refId": "A", "expr": 'pg_up{server="$server"}', "legendFormat": "{{instance}}"}
KEPT = {
    "id": 7,
    "title": "Max Connections",
    "gridPos": {"h": 6, "w": 4, "x": 20, "y": 1},
    "datasource": "${DS_PROMETHEUS}",
    "targets": [QUERY, {**QUERY, "refId": "B", "instant": True, "interval": "30s"}],
    "description": "kept",
    "links": [],
}


PROPERTIES = hypothesis_settings(max_examples=150, deadline=None)


def angular_panel(kind: str, options: dict):
    return st.fixed_dictionaries({}, optional=options).map(
        lambda drawn: {**KEPT, "type": kind, **drawn}
    )


def converted(panel: dict, kind: str) -> tuple[dict, dict]:
    """The field config defaults and options of ``panel`` converted, checked for what every panel keeps."""
    (current,) = current_grafana_dashboard({"panels": [panel]})["panels"]
    assert current["type"] == kind
    json.dumps(current, allow_nan=False)  # what Grafana can read back
    assert {k: current[k] for k in KEPT if k not in ("datasource", "targets")} == {
        k: v for k, v in KEPT.items() if k not in ("datasource", "targets")
    }
    ref = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert current["datasource"] == ref
    assert current["targets"] == [{**t, "datasource": ref} for t in KEPT["targets"]]
    assert set(current) == {*KEPT, "type", "fieldConfig", "options"}
    assert isinstance(current["fieldConfig"]["defaults"], dict)
    for override in current["fieldConfig"]["overrides"]:
        assert override["matcher"]["id"] in {"byName", "byRegexp", "byValue", "byType"}
        assert override["properties"] and all(
            set(p) == {"id", "value"} for p in override["properties"]
        )
    return current["fieldConfig"]["defaults"], current["options"]


@PROPERTIES
@given(angular_panel("graph", GRAPH_OPTIONS))
def test_any_time_graph_becomes_a_timeseries_with_the_fields_grafana_needs(graph):
    defaults, options = converted(graph, "timeseries")
    if graph.get("yaxes"):
        assert defaults["unit"] == graph["yaxes"][0]["format"]
    assert defaults["custom"]["drawStyle"] in {"line", "bars", "points"}
    assert ("stacking" in defaults["custom"]) == graph.get("stack", False)
    assert set(options) == {"legend", "tooltip"}
    assert set(options["legend"]) >= {"displayMode", "showLegend", "placement", "calcs"}
    assert set(options["legend"]["calcs"]) <= {"min", "max", "mean", "lastNotNull", "sum"}
    assert options["tooltip"]["mode"] in {"single", "multi"}
    steps = defaults.get("thresholds", {"steps": [{"value": None}]})["steps"]
    assert steps[0]["value"] is None  # the base step, from minus infinity


@PROPERTIES
@given(angular_panel("singlestat", SINGLESTAT_OPTIONS))
def test_any_singlestat_becomes_a_stat_with_the_fields_grafana_needs(singlestat):
    defaults, options = converted(singlestat, "stat")
    (calc,) = options["reduceOptions"]["calcs"]
    assert calc in {"min", "max", "mean", "lastNotNull", "sum", "first", "delta", "diff", "range"}
    assert options["graphMode"] == (
        "area" if singlestat.get("sparkline", {}).get("show") else "none"
    )
    assert options["colorMode"] in {"background", "value", "none"}
    assert defaults.get("unit") == singlestat.get("format", "none")
    for mapping in defaults.get("mappings", []):
        assert mapping["type"] in {"value", "range", "special"} and mapping["options"]
    if singlestat.get("thresholds") and singlestat.get("colors"):
        steps = defaults["thresholds"]["steps"]
        assert (
            steps[0]["value"] is None
            and [s["color"] for s in steps] == singlestat["colors"][: len(steps)]
        )
