"""pgmon's own dashboards, the recording rules they read, and Grafana's settings."""

import json
import re

import yaml

from tasks.dashboard import adapt_dashboard_9628, panels_of
from tasks.render import render_stack
from tasks.render.compose import compose_services
from tasks.render.grafana import (
    DASHBOARD_9628_UID,
    DATASOURCE_UID,
    pgmon_dashboard_files,
)
from tasks.render.prometheus import render_recording_rules
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
        for group in yaml.safe_load(render_recording_rules(settings))["groups"]
        for rule in group["rules"]
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
