"""pgmon's own dashboards, the recording rules they read, and Grafana's settings."""

import json
import re

import yaml

from tasks.dashboard import REMOVED_PANEL_TYPES, adapt_dashboard_9628, panels_of
from tasks.render import render_stack
from tasks.render.compose import compose_services
from tasks.render.grafana import (
    DASHBOARD_9628_UID,
    DATASOURCE_UID,
    bind_dashboard_inputs,
    pgmon_dashboard_files,
)
from tasks.render.prometheus import render_recording_rules, render_rules
from tasks.settings import build_settings
from tasks.stack_model import DASHBOARDS_DIR, RELOAD_PROMETHEUS

from .conftest import ENVIRON, VARIABLE, exprs, group_data

# Raw and recorded (level:metric:operation) metric names with their matchers.
SELECTOR = re.compile(r'(?<![\w:"])((?:pg|process)_[\w:]*|[a-z_]+:[\w:]+)(\{[^}]*\})?')
BUILTINS = {"__range", "__rate_interval", "__interval", "__auto_interval_interval"}


def own_dashboards() -> dict[str, dict]:
    return {name: json.loads(content) for name, content in pgmon_dashboard_files().items()}


# ---------------------------------------------------------------- pgmon's own dashboards


def test_own_dashboards_have_units_thresholds_and_descriptions_on_every_panel():
    dashboards = own_dashboards()
    assert dashboards and set(dashboards) == {path.name for path in DASHBOARDS_DIR.glob("*.json")}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids + [DASHBOARD_9628_UID])) == len(uids) + 1
    for name, dashboard in dashboards.items():
        assert "pgmon" in dashboard["tags"] and "id" not in dashboard, name
        variables = [v["name"] for v in dashboard["templating"]["list"]]
        assert variables[:3] == ["datasource", "server", "database"], name
        # This host's Prometheus unless the user picks a store (docs/storage.md); every query follows the pick.
        picker = dashboard["templating"]["list"][0]
        assert (picker["type"], picker["query"], picker["current"]["value"]) == (
            "datasource",
            "prometheus",
            DATASOURCE_UID,
        )
        for variable in dashboard["templating"]["list"][1:]:
            assert variable["datasource"]["uid"] == "${datasource}", (name, variable["name"])
        for panel in panels_of(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            defaults = panel["fieldConfig"]["defaults"]
            assert panel["description"].strip() and defaults["unit"], where
            assert defaults["thresholds"]["steps"][0]["value"] is None, where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
                assert set(VARIABLE.findall(target["expr"])) <= set(variables) | BUILTINS, where
            assert panel["datasource"]["uid"] == "${datasource}", where


def test_own_dashboards_read_only_series_that_are_recorded_or_scraped(settings):
    recorded = {
        rule["record"]
        for rules in (render_recording_rules(settings), render_rules(settings))
        for group in yaml.safe_load(rules)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used = {
        name
        for dashboard in own_dashboards().values()
        for _, expr in exprs(dashboard)
        for name, _ in SELECTOR.findall(expr)
    }
    assert {name for name in used if ":" in name} <= recorded
    assert recorded - used == set(), "a recording rule no dashboard reads"
    assert {name for name in used if ":" not in name} <= {
        "pg_up",
        "pg_stat_user_tables_n_live_tup",
        "pg_stat_user_tables_n_dead_tup",
        "pg_stat_user_tables_last_autovacuum",
    }


def test_fleet_links_open_the_per_database_views_with_their_variables(dashboard_9628):
    targets = {d["uid"]: d for d in own_dashboards().values()}
    targets[DASHBOARD_9628_UID] = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    fleet = targets["pgmon-fleet"]
    urls = [
        link["url"]
        for panel in panels_of(fleet["panels"])
        for override in panel.get("fieldConfig", {}).get("overrides", [])
        for prop in override["properties"]
        if prop["id"] == "links"
        for link in prop["value"]
    ]
    assert {url.split("/")[2] for url in urls} == {DASHBOARD_9628_UID, "pgmon-tables"}
    for url in urls:
        variables = {v["name"] for v in targets[url.split("/")[2]]["templating"]["list"]}
        assert set(re.findall(r"var-(\w+)=", url)) <= variables and "${__url_time_range}" in url, (
            url
        )


# ---------------------------------------------------------------- every provisioned dashboard

# Grafana 12's own panel plugins (React). Anything else would be a plugin of its own, maybe Angular.
GRAFANA_12_PANEL_TYPES = {
    "alertlist",
    "annolist",
    "barchart",
    "bargauge",
    "candlestick",
    "canvas",
    "dashlist",
    "datagrid",
    "flamegraph",
    "gauge",
    "geomap",
    "heatmap",
    "histogram",
    "logs",
    "news",
    "nodeGraph",
    "piechart",
    "row",
    "stat",
    "state-timeline",
    "status-history",
    "table",
    "text",
    "timeseries",
    "traces",
    "trend",
    "xychart",
}


def provisioned_dashboards(settings, dashboard_9628) -> dict[str, dict]:
    """Every dashboard file a deploy writes for Grafana's provider, 9628 adapted as the deploy loads it."""
    adapted = adapt_dashboard_9628(dashboard_9628, "pgmon_dashboard_9628")
    return {
        f.path: json.loads(f.content)
        for f in render_stack(settings, adapted).files
        if f.path.startswith("grafana/dashboards/")
    }


def grafana_12_problems(dashboard: dict) -> list[str]:
    """What keeps current Grafana from showing each panel as written, one line per problem."""
    panels = list(panels_of(dashboard["panels"]))
    ids = [panel.get("id") for panel in panels]
    problems = [f"panel ids not unique integers: {ids}"] if len(set(ids)) < len(ids) else []
    return problems + [
        f"{panel.get('title')!r}: {problem}"
        for panel in panels
        for problem in panel_problems(panel)
    ]


def panel_problems(panel: dict) -> list[str]:
    kind = panel.get("type")
    if kind in REMOVED_PANEL_TYPES or kind not in GRAFANA_12_PANEL_TYPES:
        return [f"type {kind!r} is not one of Grafana 12's panels"]
    grid = panel.get("gridPos") or {}
    problems = [
        problem
        for problem, broken in (
            ("no integer id", type(panel.get("id")) is not int),
            ("no title", not isinstance(panel.get("title"), str)),
            ("gridPos h/w/x/y not integers", any(type(grid.get(k)) is not int for k in "hwxy")),
        )
        if broken
    ]
    if kind == "row":
        return problems
    if not isinstance(panel.get("options"), dict):
        problems.append("no options")
    if kind == "text":
        return problems
    field_config = panel.get("fieldConfig") or {}
    if not isinstance(field_config.get("defaults"), dict) or not isinstance(
        field_config.get("overrides"), list
    ):
        problems.append("no fieldConfig defaults and overrides")
    if not (panel.get("datasource") or {}).get("uid"):
        problems.append(f"data source {panel.get('datasource')!r} is not a reference")
    targets = panel.get("targets") or []
    if not targets or not all(t.get("refId") and t.get("expr") for t in targets):
        problems.append("a query without refId or expr")
    return problems


def test_no_provisioned_dashboard_has_a_panel_grafana_12_cannot_show(settings, dashboard_9628):
    dashboards = provisioned_dashboards(settings, dashboard_9628)
    assert set(dashboards) == {
        "grafana/dashboards/postgresql-9628.json",
        *(f"grafana/dashboards/{path.name}" for path in DASHBOARDS_DIR.glob("*.json")),
    }
    for path, dashboard in dashboards.items():
        assert grafana_12_problems(dashboard) == [], path
    # the check can fail: 9628 as published, only bound, has Grafana 6's panels
    published = bind_dashboard_inputs(
        dashboard_9628, {"DS_PROMETHEUS": DATASOURCE_UID}, DASHBOARD_9628_UID
    )
    problems = grafana_12_problems(published)
    assert "'Version': type 'singlestat' is not one of Grafana 12's panels" in problems
    assert "'Transactions': type 'graph' is not one of Grafana 12's panels" in problems


# ---------------------------------------------------------------- recording rules and the stack


def test_stack_provisions_the_dashboards_and_loads_the_recording_rules(settings, dashboard_9628):
    files = {f.path: f for f in render_stack(settings, dashboard_9628).files}
    for name, content in pgmon_dashboard_files().items():
        assert files[f"grafana/dashboards/{name}"].content == content
        assert not files[
            f"grafana/dashboards/{name}"
        ].on_change  # Grafana rescans; nothing restarts
    assert files["prometheus/rules/pgmon.recording.yml"].on_change == (RELOAD_PROMETHEUS,)


def test_rate_windows_hold_at_least_four_scrapes(settings):
    assert "[60s]" in render_recording_rules(settings).decode()
    slow = build_settings(group_data(pgmon_scrape_interval_seconds=60), ENVIRON)
    assert (
        "[240s]" in render_recording_rules(slow).decode()
        and "[60s]" not in render_recording_rules(slow).decode()
    )


def test_grafana_sends_nothing_off_the_host_and_admits_only_its_admin(settings):
    environment = compose_services(settings)["grafana"]["environment"]
    assert {
        key: environment.get(key)
        for key in (
            "GF_AUTH_ANONYMOUS_ENABLED",
            "GF_USERS_ALLOW_SIGN_UP",
            "GF_ANALYTICS_REPORTING_ENABLED",
            "GF_ANALYTICS_CHECK_FOR_UPDATES",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES",
            "GF_PLUGINS_PLUGIN_ADMIN_ENABLED",
            "GF_SNAPSHOTS_EXTERNAL_ENABLED",
        )
    } == dict.fromkeys(
        (
            "GF_AUTH_ANONYMOUS_ENABLED",
            "GF_USERS_ALLOW_SIGN_UP",
            "GF_ANALYTICS_REPORTING_ENABLED",
            "GF_ANALYTICS_CHECK_FOR_UPDATES",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES",
            "GF_PLUGINS_PLUGIN_ADMIN_ENABLED",
            "GF_SNAPSHOTS_EXTERNAL_ENABLED",
        ),
        "false",
    )
    assert {
        key: environment.get(key)
        for key in (
            "GF_PLUGINS_PREINSTALL_DISABLED",
            "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED",
            "GF_SECURITY_DISABLE_GRAVATAR",
        )
    } == dict.fromkeys(
        (
            "GF_PLUGINS_PREINSTALL_DISABLED",
            "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED",
            "GF_SECURITY_DISABLE_GRAVATAR",
        ),
        "true",
    )
