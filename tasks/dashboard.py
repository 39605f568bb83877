"""Dashboard 9628 ("PostgreSQL Database") fetched on the controller, cached, never by Grafana,
and adapted to pgmon's labels before it is bound and written.

Grafana's import API does not download from grafana.com, so the controller does,
once per pinned revision, and keeps the JSON in ~/.cache/pgmon (or
$XDG_CACHE_HOME/pgmon). Air-gapped sites set ``pgmon_dashboard_9628.file``.

As published, 9628 finds its exporters by Kubernetes labels (``kubernetes_namespace``,
``release``) that a Docker stack does not have, and assumes one exporter per server whose
``instance`` carries every series. ``adapt_dashboard_9628`` rewrites its template variables
and label matchers for pgmon's ``server``/``instance`` labels, then turns its Angular panels
(``graph``, ``singlestat``, which Grafana 12 removed) into the ``timeseries`` and ``stat`` panels
Grafana's own migration makes of them; docs/dashboards.md explains both.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from pathlib import Path

from .settings import DeployError, Settings

# The exporter process's own series: one set per exporter, so they follow the database picked.
# Every other series 9628 reads comes from the collectors that only a server's first exporter runs
# (render.SERVER_WIDE_COLLECTORS and the default metrics), labelled with that exporter's instance.
PER_EXPORTER_PREFIXES = ("process_",)
# Labels 9628 selects on that pgmon replaces with its scope matcher (server or instance).
REPLACED_LABELS = ("kubernetes_namespace", "release", "instance")
# postgres_exporter 0.11+ names these counters with _total; 9628 still queries the old names.
_BGWRITER = re.compile(r"^pg_stat_bgwriter_\w+$")
# PostgreSQL 17 moved pg_stat_bgwriter's checkpoint columns to pg_stat_checkpointer, which postgres_exporter
# reads under these names (its stat_checkpointer collector, on in the server's first exporter), and its
# buffers_backend columns to pg_stat_io, which postgres_exporter does not read: pgmon's own query
# (render.exporters.SERVER_QUERIES["pgmon_stat_io_backend"], same exporter, PostgreSQL 17 on) gives those.
MOVED_IN_PG17 = {
    "pg_stat_bgwriter_buffers_checkpoint_total": "pg_stat_checkpointer_buffers_written_total",
    "pg_stat_bgwriter_checkpoint_write_time_total": "pg_stat_checkpointer_write_time_total",
    "pg_stat_bgwriter_checkpoint_sync_time_total": "pg_stat_checkpointer_sync_time_total",
    "pg_stat_bgwriter_checkpoints_timed_total": "pg_stat_checkpointer_num_timed_total",
    "pg_stat_bgwriter_checkpoints_req_total": "pg_stat_checkpointer_num_requested_total",
    "pg_stat_bgwriter_buffers_backend_total": "pgmon_stat_io_backend_writes",
    "pg_stat_bgwriter_buffers_backend_fsync_total": "pgmon_stat_io_backend_fsyncs",
}
_MOVED_NAME = re.compile(r"\b(" + "|".join(MOVED_IN_PG17) + r")\b")
# A metric selector: a pg_/process_ metric name and its optional {matchers} (quoted values may hold braces).
_SELECTOR = re.compile(r'(?<![\w:"])((?:pg|process)_[\w:]*)(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})?')
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')

SERVER_VARIABLE = {
    "name": "server",
    "label": "Server",
    "type": "query",
    "query": 'label_values(pg_up{job="postgres"}, server)',
}
VARIABLE_CHANGES = {
    # pgmon's instance label is the configured database name: the picker for "which database".
    "instance": {
        "label": "Database",
        "query": 'label_values(pg_up{job="postgres", server="$server"}, instance)',
    },
    # The PostgreSQL name of the database picked; server-wide rows are labelled with it.
    "datname": {
        "label": "PostgreSQL database",
        "hide": 2,
        "includeAll": False,
        "multi": False,
        "query": 'label_values(pgmon_database_info{instance="$instance"}, datname)',
    },
}
# A drop-down of pgmon's dashboards (all tagged "pgmon"), keeping the time range.
PGMON_DASHBOARDS_LINK = {
    "title": "pgmon",
    "type": "dashboards",
    "tags": ["pgmon"],
    "asDropdown": True,
    "includeVars": False,
    "keepTime": True,
    "icon": "external link",
    "targetBlank": False,
}


# The dashboard schema of Grafana 12.2 (LATEST_VERSION in apps/dashboard/pkg/migration/schemaversion,
# what 12.2.1 exports): Grafana migrates a dashboard only from the version it declares, so the
# migrations between 9628's version and this one that touch its content are applied here.
SCHEMA_VERSION = 42
# Panel types Grafana 12 removed with Angular, and what Grafana migrates each to on load
# (autoMigrateAngular in public/app/features/dashboard/state/PanelModel.ts).
REMOVED_PANEL_TYPES = {
    "graph": "timeseries",
    "singlestat": "stat",
    "grafana-singlestat-panel": "stat",
    "table-old": "table",
    "grafana-piechart-panel": "piechart",
    "grafana-worldmap-panel": "geomap",
    "natel-discrete-panel": "state-timeline",
}
# What Grafana keeps of a panel whose type it changes (the persisted mustKeepProps of PanelModel.ts);
# every other key was an option of the Angular panel, read by the conversion and dropped.
KEPT_PANEL_KEYS = frozenset(
    (
        "id gridPos title scopedVars repeat repeatPanelId repeatDirection repeatedByRow minSpan "
        "collapsed panels targets datasource timeFrom timeShift hideTimeOverride description links "
        "cacheTimeout queryCachingTTL transparent pluginVersion transformations fieldConfig "
        "maxDataPoints interval libraryPanel"
    ).split()
)
# Grafana 6 filled a panel's unset options from these (the panelDefaults of its graph and singlestat
# controllers) before drawing it, and its export writes them all out; Grafana 12's migration reads only
# what the JSON holds, so they are filled first and a sparse panel keeps the meaning it had.
GRAPH_DEFAULTS = {
    "yaxes": [
        {"show": True, "logBase": 1, "min": None, "max": None, "format": "short", "label": None}
    ]
    * 2,
    "xaxis": {"show": True, "mode": "time"},
    "lines": True,
    "fill": 1,
    "fillGradient": 0,
    "linewidth": 1,
    "dashes": False,
    "dashLength": 10,
    "spaceLength": 10,
    "points": False,
    "pointradius": 2,
    "bars": False,
    "stack": False,
    "legend": {
        "show": True,
        "values": False,
        "min": False,
        "max": False,
        "current": False,
        "total": False,
        "avg": False,
    },
    "nullPointMode": "null",
    "steppedLine": False,
    "tooltip": {"value_type": "individual", "shared": True, "sort": 0},
    "aliasColors": {},
    "seriesOverrides": [],
    "thresholds": [],
    "timeRegions": [],
}
SINGLESTAT_DEFAULTS = {
    "format": "none",
    "nullText": None,
    "valueMaps": [{"value": "null", "op": "=", "text": "N/A"}],
    "rangeMaps": [{"from": "null", "to": "null", "text": "N/A"}],
    "mappingType": 1,
    "nullPointMode": "connected",
    "valueName": "avg",
    "thresholds": "",
    "colorBackground": False,
    "colorValue": False,
    "colors": ["#299c46", "rgba(237, 129, 40, 0.89)", "#d44a3a"],
    "sparkline": {"show": False, "lineColor": "rgb(31, 120, 193)"},
    "gauge": {"show": False, "minValue": 0, "maxValue": 100},
    "tableColumn": "",
}
# Angular value names (singlestat's valueName, the graph legend's values) that are a reducer's id or
# alias in Grafana's fieldReducers registry; a singlestat's other names ("name", "last_time") get "mean".
REDUCER_IDS = {
    "min": "min",
    "max": "max",
    "avg": "mean",
    "current": "lastNotNull",
    "total": "sum",
    "first": "first",
    "delta": "delta",
    "diff": "diff",
    "range": "range",
}
# 9628's one data source input; pgmon binds it to its Prometheus, which is also the default data source.
PROMETHEUS_INPUT = "${DS_PROMETHEUS}"
# A series override's alias written as a regular expression, as the graph panel recognised it.
_REGEX_ALIAS = re.compile(r"^([/~@;%#'])(.*?)\1([gimsuy]*)$")
_LEADING_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgmon"


def _published(raw: bytes, source: str, field: str, pinned: str | None) -> dict:
    """The published JSON read from ``raw``, refused unless it has the pinned sha256 and 9628's input."""
    digest = hashlib.sha256(raw).hexdigest()
    if pinned and digest != pinned:
        raise DeployError(
            f"pgmon_dashboard_9628.sha256: {source} has sha256 {digest}, not the pinned {pinned}; "
            "fetch the pinned revision again (delete the cached copy in ~/.cache/pgmon), or pin the new sha256 "
            "after reviewing the JSON"
        )
    try:
        dashboard = json.loads(raw)
    except ValueError as error:
        raise DeployError(
            f"{field}: {source} is not JSON ({error}); point it at dashboard 9628's JSON"
        ) from None
    inputs = dashboard.get("__inputs", []) if isinstance(dashboard, dict) else None
    if not isinstance(inputs, list) or "DS_PROMETHEUS" not in [
        i.get("name") for i in inputs if isinstance(i, dict)
    ]:
        raise DeployError(
            f"{field}: {source} is not a grafana.com dashboard export with a DS_PROMETHEUS input; "
            "point it at dashboard 9628's JSON"
        )
    return dashboard


def load_dashboard_9628(settings: Settings) -> dict:
    """The dashboard adapted to pgmon's labels, from the configured file, the cache, or a download (then cached).

    The cache keeps the downloaded bytes as they are, so ``sha256sum`` of the cached file is the
    value to pin in ``pgmon_dashboard_9628.sha256``.
    """
    source = settings.config.dashboard_9628
    if source.file:
        try:
            raw = Path(source.file).read_bytes()
        except OSError as error:
            raise DeployError(
                f"pgmon_dashboard_9628.file: cannot read {source.file}: {error}"
            ) from None
        return adapt_dashboard_9628(
            _published(raw, source.file, "pgmon_dashboard_9628.file", source.sha256),
            "pgmon_dashboard_9628.file",
        )
    url = source.url.format(revision=source.revision)
    cached = (
        cache_dir()
        / f"dashboard-9628-r{source.revision}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.json"
    )
    if cached.exists():
        published = _published(
            cached.read_bytes(), str(cached), "pgmon_dashboard_9628", source.sha256
        )
        return adapt_dashboard_9628(published, "pgmon_dashboard_9628.revision")
    # Imported only to download: with the dashboard cached, every run would pay its import (0.1-0.3 s).
    import requests

    try:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
    except requests.RequestException as error:
        raise DeployError(
            f"pgmon_dashboard_9628.url: cannot download {url} ({error}); without internet access, "
            "save the dashboard JSON on this machine and set pgmon_dashboard_9628 = {'file': '/path/9628.json'}"
        ) from None
    published = _published(response.content, url, "pgmon_dashboard_9628.url", source.sha256)
    adapted = adapt_dashboard_9628(
        published, "pgmon_dashboard_9628.revision"
    )  # refuse before caching
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(response.content)
    partial.replace(cached)
    return adapted


def panels_of(panels: list[dict]):
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from panels_of(panel.get("panels") or [])


def scope_selectors(expr: str) -> str:
    """9628's label matchers turned into pgmon's: each selector gets ``server="$server"`` (server-wide
    series) or ``instance="$instance"`` (the exporter's own), in place of release/instance/namespace."""

    def rewrite(match: re.Match) -> str:
        name, braces = match.group(1), match.group(2) or "{}"
        if _BGWRITER.match(name) and not name.endswith("_total"):
            name += "_total"
        if _MATCHER.sub(
            "", braces[1:-1]
        ).strip():  # dropping what it cannot read would widen the query
            raise ValueError(f"cannot read the label matchers of {match.group(0)}")
        kept = [
            m.group(0).strip().rstrip(",").strip()
            for m in _MATCHER.finditer(braces[1:-1])
            if m.group(1) not in REPLACED_LABELS
        ]
        scope = (
            'instance="$instance"' if name.startswith(PER_EXPORTER_PREFIXES) else 'server="$server"'
        )
        return name + "{" + ", ".join([scope, *kept]) + "}"

    return _SELECTOR.sub(rewrite, expr)


def with_pg17_fallback(expr: str) -> str:
    """An expression over counters PostgreSQL 17 moved, ``or`` the same over their PostgreSQL 17 names:
    a server has one or the other, so each database shows whichever its server has. The whole
    expression is repeated because a range selector cannot apply to ``a or b``."""
    if not _MOVED_NAME.search(expr):
        return expr
    since_17 = _MOVED_NAME.sub(lambda m: MOVED_IN_PG17[m.group(1)], expr)
    return f"({expr}) or ({since_17})"


def adapt_dashboard_9628(published: dict, field: str) -> dict:
    """``_adapt`` that names ``field`` for any JSON shape it cannot read, instead of failing with a traceback."""
    try:
        return current_grafana_dashboard(_adapt(published, field))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise DeployError(
            f"{field}: the dashboard JSON is not shaped like 9628's ({type(error).__name__}: "
            f"{error}); point it at dashboard 9628 revision 8"
        ) from None


def _adapt(published: dict, field: str) -> dict:
    """9628 for pgmon: Server and Database pickers in place of its Kubernetes chain, every query scoped
    by them, bgwriter counters under their current names (or where PostgreSQL 17 moved them).
    Refuses a dashboard it does not recognise (naming ``field``), so a changed upstream JSON cannot
    slip through with empty panels.
    """
    dashboard = copy.deepcopy(published)
    variables = dashboard.get("templating", {}).get("list", [])
    by_name = {v.get("name"): v for v in variables}
    missing = [name for name in ("namespace", "release", *VARIABLE_CHANGES) if name not in by_name]
    if missing:
        raise DeployError(
            f"{field}: this dashboard has no template variable(s) {', '.join(missing)}, so it is not the "
            "revision pgmon knows how to adapt (9628 revision 8); pin revision 8"
        )
    adapted_variables = []
    for variable in variables:
        name = variable.get("name")
        if name == "namespace":
            continue  # no Kubernetes namespace on a Docker stack
        if name == "release":
            variable = {
                **variable,
                **SERVER_VARIABLE,
                "regex": "",
                "includeAll": False,
                "multi": False,
            }
        elif name in VARIABLE_CHANGES:
            variable = {**variable, **VARIABLE_CHANGES[name], "regex": ""}
        if name in ("release", *VARIABLE_CHANGES):
            variable["definition"] = variable["query"]
            variable["current"], variable["options"] = (
                {},
                [],
            )  # values of the Kubernetes chain mean nothing here
        adapted_variables.append(variable)
    dashboard["templating"]["list"] = adapted_variables
    for panel in panels_of(dashboard.get("panels", [])):
        for target in panel.get("targets") or []:
            if isinstance(target.get("expr"), str):
                try:
                    target["expr"] = with_pg17_fallback(scope_selectors(target["expr"]))
                except ValueError as error:
                    raise DeployError(
                        f"{field}: panel {panel.get('title')!r}: {error}; pin revision 8, whose "
                        "queries pgmon knows"
                    ) from None
    leftovers = sorted(
        set(
            re.findall(
                r"\$release|\$namespace|kubernetes_namespace|\$\{(?:release|namespace)\}",
                json.dumps(dashboard),
            )
        )
    )
    if leftovers:
        raise DeployError(
            f"{field}: the dashboard still refers to {', '.join(leftovers)} after pgmon adapted it; "
            "pin revision 8, whose queries pgmon knows"
        )
    dashboard["tags"] = sorted(set(dashboard.get("tags") or []) | {"pgmon"})
    dashboard["links"] = [*(dashboard.get("links") or []), PGMON_DASHBOARDS_LINK]
    return dashboard


def current_grafana_dashboard(dashboard: dict) -> dict:
    """``dashboard`` as Grafana 12.2 would hold it after loading: its ``graph`` and ``singlestat`` panels
    converted the way Grafana converts them, data sources as references, at ``SCHEMA_VERSION``.

    Refuses (ValueError) a panel type Grafana removed that it does not convert.
    """
    current = copy.deepcopy(dashboard)
    current["panels"] = [_current_panel(panel) for panel in current.get("panels", [])]
    for annotation in current.get("annotations", {}).get("list", []):
        annotation["datasource"] = _datasource_ref(annotation.get("datasource"))
    for variable in current.get("templating", {}).get("list", []):
        _current_variable(variable)
    if not isinstance(current.get("refresh"), str):
        current["refresh"] = ""
    (current.get("timepicker") or {}).pop("time_options", None)
    current["schemaVersion"] = SCHEMA_VERSION
    return current


def _current_variable(variable: dict) -> None:
    """Schema 28 dropped variable tags; 29 reads query variables' options again on every load."""
    for key in ("tags", "tagsQuery", "tagValuesQuery", "useTags"):
        variable.pop(key, None)
    if variable.get("type") == "query":
        if variable.get("refresh") not in (1, 2):
            variable["refresh"] = 1
        if variable.get("options"):
            variable["options"] = []


def _current_panel(panel: dict) -> dict:
    kind = panel.get("type")
    if kind == "row":
        return {**panel, "panels": [_current_panel(p) for p in panel.get("panels") or []]}
    if kind == "graph":
        panel = _timeseries_from_graph(panel)
    elif kind == "singlestat":
        panel = _stat_from_singlestat(panel)
    elif kind in REMOVED_PANEL_TYPES:
        raise ValueError(
            f"panel {panel.get('title')!r} is a {kind} panel, which Grafana 12 removed (it makes a "
            f"{REMOVED_PANEL_TYPES[kind]} of it) and pgmon does not convert"
        )
    return _with_datasource_refs(panel)


def _with_datasource_refs(panel: dict) -> dict:
    """Schema 33 and 36: a panel's data source as a reference, given to each query that names none."""
    if not panel.get("targets"):
        return panel
    ref = _datasource_ref(panel.get("datasource"))
    return {
        **panel,
        "datasource": ref,
        "targets": [_target_with_datasource(target, ref) for target in panel["targets"]],
    }


def _target_with_datasource(target: dict, panel_ref: dict) -> dict:
    named = target.get("datasource")
    if isinstance(named, str) or (isinstance(named, dict) and named.get("uid")):
        return {**target, "datasource": _datasource_ref(named)}
    return {**target, "datasource": dict(panel_ref)}


def _datasource_ref(value) -> dict:
    if isinstance(value, dict):
        return value
    if value in (None, "default", PROMETHEUS_INPUT):
        return {"type": "prometheus", "uid": PROMETHEUS_INPUT}
    if value == "-- Grafana --":
        return {"type": "datasource", "uid": "grafana"}
    return {"uid": value}  # Grafana keeps a name it cannot resolve as a uid


def _angular_options(panel: dict, defaults: dict, nested: tuple[str, ...] = ()) -> dict:
    """What Grafana hands a panel's migration as its Angular options, unset ones from ``defaults``."""
    options = _with_defaults({k: v for k, v in panel.items() if k not in KEPT_PANEL_KEYS}, defaults)
    for key in nested:
        if isinstance(options[key], dict):
            options[key] = _with_defaults(options[key], defaults[key])
    return options


def _with_defaults(values: dict, defaults: dict) -> dict:
    return {**values, **{k: copy.deepcopy(v) for k, v in defaults.items() if k not in values}}


def _kept(panel: dict) -> dict:
    return {k: v for k, v in panel.items() if k in KEPT_PANEL_KEYS}


def _without_none(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value) -> float | int | None:
    """Grafana's validNumber: a number, or a string that reads as one."""
    if _is_number(value):
        return value
    if isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return None
        if math.isfinite(number):
            return int(number) if number.is_integer() else number
    return None


# ---------------------------------------------------------------- graph to timeseries
# After graphToTimeseriesOptions in public/app/plugins/panel/timeseries/migrations.ts.


def _timeseries_from_graph(graph: dict) -> dict:
    angular = _angular_options(graph, GRAPH_DEFAULTS, nested=("legend", "tooltip", "xaxis"))
    _refuse_unconverted_graph(graph.get("title"), angular)
    previous = graph.get("fieldConfig") or {}
    yaxes = angular["yaxes"] or []
    defaults = {**previous.get("defaults", {}), **_axis_field_config(yaxes[0] if yaxes else None)}
    aliased = [o for o in angular["seriesOverrides"] or [] if o.get("alias")]
    series_rules = [_series_override_rule(o, angular, defaults) for o in aliased]
    defaults["custom"] = _graph_style(angular, dict(defaults.get("custom") or {}), aliased)
    defaults["nullValueMode"] = angular["nullPointMode"]
    if angular["thresholds"]:
        defaults["thresholds"], style = _graph_thresholds(angular["thresholds"])
        defaults["custom"]["thresholdsStyle"] = {"mode": style}
    legend, legend_rules = _legend(angular["legend"])
    overrides = [
        *previous.get("overrides", []),
        *_alias_color_rules(angular["aliasColors"] or {}),
        *(rule for rule in series_rules if rule["properties"]),
        *legend_rules,
        *_hidden_time_axis_rules(angular["xaxis"]),
    ]
    return {
        **_kept(graph),
        "type": "timeseries",
        "fieldConfig": {"defaults": _without_none(defaults), "overrides": overrides},
        "options": {"legend": legend, "tooltip": _tooltip(angular["tooltip"])},
    }


def _refuse_unconverted_graph(title, angular: dict) -> None:
    mode = (angular["xaxis"] or {}).get("mode", "time")
    if mode != "time":
        raise ValueError(
            f"panel {title!r}: a graph of x axis mode {mode!r}, which Grafana makes a bar chart or "
            "histogram; pgmon converts time graphs only"
        )
    if angular["timeRegions"]:
        raise ValueError(
            f"panel {title!r}: a graph with time regions, which Grafana turns into dashboard "
            "annotations; pgmon does not convert them"
        )


def _axis_field_config(axis: dict | None) -> dict:
    if not axis:
        return {}
    custom = {"axisPlacement": "auto" if axis.get("show") else "hidden"}
    if axis.get("label"):
        custom["axisLabel"] = axis["label"]
    if axis.get("logBase") in (2, 10):
        custom["scaleDistribution"] = {"type": "log", "log": axis["logBase"]}
    return _without_none(
        {
            "unit": axis.get("format"),
            "decimals": _number(axis.get("decimals")),
            "min": _number(axis.get("min")),
            "max": _number(axis.get("max")),
            "custom": custom,
        }
    )


def _graph_style(angular: dict, custom: dict, aliased_overrides: list[dict]) -> dict:
    """The graph's drawing options as the timeseries panel's ``custom`` field config."""
    custom["drawStyle"] = "bars" if angular["bars"] else "line" if angular["lines"] else "points"
    if angular["points"]:
        custom["showPoints"] = "always"
        if _is_number(angular["pointradius"]):
            custom["pointSize"] = 2 + angular["pointradius"] * 2
    elif custom["drawStyle"] != "points":
        custom["showPoints"] = "never"
    custom["lineWidth"] = angular["linewidth"]
    if angular["dashes"]:
        custom["lineStyle"] = _dash_style(angular)
    if any("fillBelowTo" in o for o in aliased_overrides):
        custom["fillOpacity"] = 35  # flot's fixed band opacity
    elif _is_number(angular["fill"]):
        custom["fillOpacity"] = angular["fill"] * 10  # 0-10 then, 0-100 now
    if _is_number(angular["fillGradient"]) and angular["fillGradient"] > 0:
        custom["gradientMode"] = "opacity"
        custom["fillOpacity"] = angular["fillGradient"] * 10
    custom["spanNulls"] = angular["nullPointMode"] == "connected"
    if angular["steppedLine"]:
        custom["lineInterpolation"] = "stepAfter"
    if custom["drawStyle"] == "bars":
        custom["fillOpacity"] = 100
    if angular["stack"]:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return _without_none(custom)


def _dash_style(angular: dict) -> dict:
    return {
        "fill": "dash" if angular["dashes"] else "solid",
        "dash": [angular["dashLength"], angular["spaceLength"]],
    }


# Each series-override key Grafana converts: (field config property, value) pairs for its value.
_SERIES_OVERRIDE_PROPERTIES = {
    "fill": lambda v: [("custom.fillOpacity", v * 10)],
    "fillBelowTo": lambda v: [("custom.fillBelowTo", v)],
    # Grafana writes custom.fillGradient here, though the property is called gradientMode.
    "fillGradient": lambda v: (
        [("custom.fillGradient", "opacity"), ("custom.fillOpacity", v * 10)] if v else []
    ),
    "points": lambda v: [("custom.showPoints", "always" if v else "never")],
    "bars": lambda v: (
        [("custom.drawStyle", "bars"), ("custom.fillOpacity", 100)]
        if v
        else [("custom.drawStyle", "line")]
    ),
    "lines": lambda v: [("custom.drawStyle", "line")] if v else [("custom.lineWidth", 0)],
    "linewidth": lambda v: [("custom.lineWidth", v)],
    "pointradius": lambda v: [("custom.pointSize", 2 + v * 2)],
    "stack": lambda v: [
        (
            "custom.stacking",
            {"mode": "normal" if v else "none", "group": v if isinstance(v, str) else "A"},
        )
    ],
    "color": lambda v: [("color", {"fixedColor": v, "mode": "fixed"})],
    "transform": lambda v: [
        ("custom.transform", "negative-Y" if v == "negative-Y" else "constant")
    ],
}


def _series_override_rule(override: dict, angular: dict, y1: dict) -> dict:
    """A graph's series override as a field override matching the series by name or regex."""
    alias = override["alias"]
    pairs = []
    for key, value in override.items():
        if key == "yaxis" and value == 2:
            pairs += _second_axis_properties(angular["yaxes"], y1)
        elif key in _SERIES_OVERRIDE_PROPERTIES:
            pairs += _SERIES_OVERRIDE_PROPERTIES[key](value)
    if {"dashes", "dashLength", "spaceLength"} & override.keys():
        pairs.append(("custom.lineStyle", _dash_style({**angular, **override})))
    return {
        "matcher": {
            "id": "byRegexp" if _REGEX_ALIAS.match(alias) else "byName",
            "options": alias,
        },
        "properties": [{"id": key, "value": value} for key, value in pairs],
    }


def _second_axis_properties(yaxes: list, y1: dict) -> list[tuple]:
    """What the right y axis sets differently from the left, for the series drawn against it."""
    y2 = _axis_field_config(yaxes[1] if len(yaxes) > 1 else None)
    y1_custom = y1.get("custom") or {}
    return [(k, v) for k, v in y2.items() if k != "custom" and v != y1.get(k)] + [
        (f"custom.{k}", v) for k, v in y2.get("custom", {}).items() if v != y1_custom.get(k)
    ]


def _alias_color_rules(alias_colors: dict) -> list[dict]:
    return [
        {
            "matcher": {"id": "byName", "options": alias},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for alias, color in alias_colors.items()
        if color
    ]


def _graph_thresholds(thresholds: list[dict]) -> tuple[dict, str]:
    """The graph's threshold lines and areas as threshold steps (None: from minus infinity) and the
    style to draw them in."""
    ordered = sorted(thresholds, key=lambda t: t["value"])
    steps = []
    for index, threshold in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        if threshold.get("op") == "gt":
            steps.append({"value": threshold["value"], "color": _threshold_color(threshold)})
        if threshold.get("op") == "lt":
            if not steps:
                steps.append({"value": None, "color": _threshold_color(threshold)})
            # below a "lt" the colour is the next "lt"'s; a gap up to a "gt" is transparent
            below_next_lt = following and following.get("op") == "lt"
            color = _threshold_color(following) if below_next_lt else "transparent"
            steps.append({"value": threshold["value"], "color": color})
    if steps and steps[0]["value"] is not None:
        steps.insert(0, {"value": None, "color": "transparent"})
    area = any(t.get("fill") for t in ordered)
    line = any(t.get("line") for t in ordered)
    style = "line+area" if line and area else "area" if area else "line"
    return {"mode": "absolute", "steps": steps}, style


def _threshold_color(threshold: dict) -> str:
    mode = threshold.get("colorMode")
    if mode == "custom":
        return threshold.get("fillColor") or threshold.get("lineColor")
    return "orange" if mode == "warning" else "red"


def _legend(legend: dict | None) -> tuple[dict, list[dict]]:
    """The legend options, and the overrides that hide all-zero or all-empty series from it."""
    options = {"displayMode": "list", "showLegend": True, "placement": "bottom", "calcs": []}
    if not legend:
        return options, []
    if legend.get("show"):
        options["displayMode"] = "table" if legend.get("alignAsTable") else "list"
    else:
        options["showLegend"] = False
    if legend.get("rightSide"):
        options["placement"] = "right"
    if legend.get("values"):
        options["calcs"] = [REDUCER_IDS[k] for k, v in legend.items() if v and k in REDUCER_IDS]
    if legend.get("sideWidth"):
        options["width"] = legend["sideWidth"]
    hidden = [("hideZero", "allIsZero"), ("hideEmpty", "allIsNull")]
    return options, [_hidden_from_legend(reducer) for key, reducer in hidden if legend.get(key)]


def _hidden_from_legend(reducer: str) -> dict:
    return {
        "matcher": {"id": "byValue", "options": {"reducer": reducer, "op": "gte", "value": 0}},
        "properties": [
            {"id": "custom.hideFrom", "value": {"tooltip": True, "viz": False, "legend": True}}
        ],
    }


def _tooltip(tooltip: dict | None) -> dict:
    options = {"mode": "single", "sort": "none"}
    tooltip = tooltip or {}
    if "shared" in tooltip:
        options["mode"] = "multi" if tooltip["shared"] else "single"
    if "sort" in tooltip and tooltip.get("shared"):
        options["sort"] = {1: "asc", 2: "desc"}.get(tooltip["sort"], "none")
    return options


def _hidden_time_axis_rules(xaxis: dict | None) -> list[dict]:
    if not xaxis or xaxis.get("show") is not False or xaxis.get("mode") != "time":
        return []
    return [
        {
            "matcher": {"id": "byType", "options": "time"},
            "properties": [{"id": "custom.axisPlacement", "value": "hidden"}],
        }
    ]


# ---------------------------------------------------------------- singlestat to stat
# After statPanelChangedHandler (public/app/plugins/panel/stat/StatMigrations.ts) and the shared
# single-stat handlers (packages/grafana-ui/.../SingleStatShared/SingleStatBaseOptions.ts).


def _stat_from_singlestat(singlestat: dict) -> dict:
    angular = _angular_options(singlestat, SINGLESTAT_DEFAULTS)
    defaults = _singlestat_field_defaults(angular)
    sparkline = angular["sparkline"] or {}
    options = {
        "reduceOptions": {"calcs": [REDUCER_IDS.get(angular["valueName"], "mean")]},
        "orientation": "horizontal",
        "graphMode": "area" if sparkline.get("show") else "none",
        "colorMode": _stat_color_mode(angular),
    }
    if angular["tableColumn"]:
        options["reduceOptions"]["fields"] = f"/^{angular['tableColumn']}$/"
    if options["colorMode"] == "none" and options["graphMode"] == "area":
        if sparkline.get("lineColor"):
            defaults["color"] = {"mode": "fixed", "fixedColor": sparkline["lineColor"]}
    if angular["valueName"] == "name":
        options["textMode"] = "name"
    previous = singlestat.get("fieldConfig") or {}
    return {
        **_kept(singlestat),
        "type": "stat",
        "fieldConfig": {"defaults": defaults, "overrides": previous.get("overrides", [])},
        "options": options,
    }


def _stat_color_mode(angular: dict) -> str:
    if angular["colorBackground"]:
        return "background"
    return "value" if angular["colorValue"] else "none"


def _singlestat_field_defaults(angular: dict) -> dict:
    defaults = {}
    if angular["format"]:
        defaults["unit"] = angular["format"]
    if angular["nullPointMode"]:
        defaults["nullValueMode"] = angular["nullPointMode"]
    if angular["nullText"]:
        defaults["noValue"] = angular["nullText"]
    decimals = angular.get("decimals")
    if decimals or _is_number(decimals):  # 0 decimals too
        defaults["decimals"] = decimals
    if angular["thresholds"] and angular["colors"] is not None:
        defaults["thresholds"] = _singlestat_thresholds(angular["thresholds"], angular["colors"])
    mappings = _value_mappings(angular, defaults.get("thresholds"))
    if mappings:
        defaults["mappings"] = mappings
    gauge = angular["gauge"] or {}
    if gauge.get("show"):
        defaults["min"], defaults["max"] = gauge["minValue"], gauge["maxValue"]
    # Grafana 8 dropped the implicit range of percentages; the stat migration makes it explicit.
    limits = {"percent": (0, 100), "percentunit": (0, 1)}.get(defaults.get("unit"))
    if limits:
        for key, limit in zip(("min", "max"), limits, strict=True):
            if not _is_number(defaults.get(key)):
                defaults[key] = limit
    return defaults


def _singlestat_thresholds(thresholds: str, colors: list) -> dict:
    """Levels such as "80,90" and one colour more: the first from minus infinity (None), then one
    per level."""
    levels = [_number(level) for level in thresholds.split(",")]
    steps = [{"value": None, "color": colors[0]}] if colors else []
    for level, color in zip(levels, colors[1:], strict=False):
        steps.append(_without_none({"value": level, "color": color}))
    return {"mode": "absolute", "steps": steps}


def _value_mappings(angular: dict, thresholds: dict | None) -> list[dict]:
    """convertOldAngularValueMappings: the value or range maps the panel's mapping type selects."""
    kind = angular["mappingType"] or (
        1 if angular["valueMaps"] else 2 if angular["rangeMaps"] else None
    )
    old_maps = {1: angular["valueMaps"], 2: angular["rangeMaps"]}.get(kind) or []
    mappings = [_value_mapping(kind, old, thresholds) for old in old_maps]
    return [mapping for mapping in mappings if mapping]


def _value_mapping(kind: int, old: dict, thresholds: dict | None) -> dict | None:
    result = _without_none({"text": old.get("text"), "color": _mapped_color(old, thresholds)})
    null_match = {"type": "special", "options": {"match": "null", "result": result}}
    if kind == 1:
        value = old.get("value")
        if value is None:
            return None
        if value == "null":
            return null_match
        key = value if isinstance(value, str) else json.dumps(value)
        return {"type": "value", "options": {key: result}}
    if "null" in (old.get("from"), old.get("to")):
        return null_match
    bounds = {"from": _number(old.get("from")), "to": _number(old.get("to"))}
    return {"type": "range", "options": {**bounds, "result": result}}


def _mapped_color(old: dict, thresholds: dict | None) -> str | None:
    """The colour the thresholds give the mapping's text read as a number."""
    number = _leading_number(old.get("text"))
    if number is None or not thresholds or not thresholds["steps"]:
        return None
    active = thresholds["steps"][0]
    for step in thresholds["steps"]:
        if "value" not in step or (step["value"] is not None and number < step["value"]):
            break
        active = step
    return active.get("color")


def _leading_number(text) -> float | None:
    """JavaScript's parseFloat: the number a text starts with."""
    if _is_number(text):
        return text
    match = _LEADING_NUMBER.match(text) if isinstance(text, str) else None
    return float(match.group(0)) if match else None
