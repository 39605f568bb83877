"""Alert thresholds, routing and the stack additions the rules need: settings in, configs out."""

import json
import re
from pathlib import Path

import yaml

from tasks.render import (
    compose_services,
    render_prometheus_config,
    render_rules,
    render_stack,
)
from tasks.settings import AlertThresholds, build_settings

from .conftest import ENVIRON, FIXTURES, group_data
from .test_settings import error_for


def with_thresholds(index: int, thresholds: dict, **overrides) -> dict:
    databases = group_data()["pgmon_databases"]
    databases[index] = {**databases[index], "alert_thresholds": thresholds}
    return group_data(pgmon_databases=databases, **overrides)


def alert_rules(settings) -> dict[str, list[dict]]:
    rules: dict[str, list[dict]] = {}
    for group in yaml.safe_load(render_rules(settings))["groups"]:
        for rule in group["rules"]:
            rules.setdefault(rule["alert"], []).append(rule)
    return rules


def rendered(settings, path: str):
    """One file of the rendered stack, as a ManagedFile."""
    stack = render_stack(settings, json.loads((FIXTURES / "dashboard-9628.json").read_text()))
    return next(f for f in stack.files if f.path == path)


def test_threshold_mistakes_name_the_key_and_the_fix():
    message = error_for(with_thresholds(
        0, {"host_cpu_percent": 50, "idle_in_transacton_seconds": 60},
        pgmon_alert_thresholds={"postgres_down_for": "2m", "connections_percent": 150, "deadlocks_window": "30s"},
    ))
    assert ("pgmon_databases[0].alert_thresholds.host_cpu_percent: is about the processing host, not a database; "
            "set it in pgmon_alert_thresholds") in message
    assert ("pgmon_databases[0].alert_thresholds.idle_in_transacton_seconds: unknown alert threshold; "
            "did you mean idle_in_transaction_seconds?") in message
    assert "pgmon_alert_thresholds.postgres_down_for: set it as pgmon_alert_timing.postgres_down_for" in message
    assert "pgmon_alert_thresholds.connections_percent: Input should be less than or equal to 100" in message


def test_windows_must_hold_several_scrapes():
    message = error_for(with_thresholds(2, {"slow_query_window": "1m"}, pgmon_scrape_interval_seconds=30))
    assert ("pgmon_databases[2].alert_thresholds.slow_query_window: '1m' holds fewer than 4 scrapes (30s apart); "
            "make it at least 120s") in message
    assert "pgmon_alert_thresholds." not in message  # the defaults (10m, 15m) are long enough


def test_databases_of_one_server_cannot_disagree_on_a_server_threshold():
    databases = group_data()["pgmon_databases"]
    databases[0] = {**databases[0], "alert_thresholds": {"connections_percent": 70}}
    databases[1] = {**databases[1], "alert_thresholds": {"connections_percent": 75}}
    message = error_for(group_data(pgmon_databases=databases))
    assert ("pgmon_databases[1].alert_thresholds.connections_percent: billing shares db1:5432 with shop, "
            "which sets 70.0; connections_percent judges the whole server") in message


def test_a_database_override_applies_to_its_server_and_to_it_alone():
    settings = build_settings(with_thresholds(1, {"connections_percent": 70, "long_transaction_seconds": 60}), ENVIRON)
    rules = alert_rules(settings)
    connections = {rule["labels"]["thresholds"]: rule["expr"] for rule in rules["TooManyConnections"]}
    assert connections.keys() == {"db1:5432", "default"}
    assert 'server="db1:5432"' in connections["db1:5432"] and connections["db1:5432"].endswith("> 70")
    assert 'server="db2:5433"' in connections["default"] and connections["default"].endswith("> 80")
    long_running = {rule["labels"]["thresholds"]: rule["expr"] for rule in rules["LongRunningTransaction"]}
    assert 'pgmon_database_info{database="billing"}' in long_running["billing"] and "> 60)" in long_running["billing"]
    assert 'pgmon_database_info{database=~"shop|ledger"}' in long_running["default"]


def test_adding_a_database_changes_no_rule():
    settings = build_settings(group_data(), ENVIRON)
    databases = group_data()["pgmon_databases"] + [
        {"name": "extra", "host": "db3", "dbname": "x", "user": "u", "password_env": "PW_LEDGER"}]
    assert render_rules(build_settings(group_data(pgmon_databases=databases), ENVIRON)) == render_rules(settings)
    assert "extra" not in render_rules(settings).decode()


def test_server_matchers_escape_regex_and_string_characters():
    databases = group_data()["pgmon_databases"] + [
        {"name": "odd", "host": 'db.(x)"y', "dbname": "o", "user": "u", "password_env": "PW_LEDGER"}]
    databases[0] = {**databases[0], "alert_thresholds": {"restart_window": "1h"}}
    rules = alert_rules(build_settings(group_data(pgmon_databases=databases), ENVIRON))
    default = next(rule for rule in rules["PostgresRestarted"] if rule["labels"]["thresholds"] == "default")
    assert r'server=~"db2:5433|db\\.\\(x\\)\"y:5432"' in default["expr"]


def test_node_exporter_reads_the_host_and_is_scraped(settings):
    node = compose_services(settings)["node-exporter"]
    assert node["image"] == "prom/node-exporter:v1.9.0"
    assert node["pid"] == "host" and node["volumes"] == ["/:/host:ro"] and "--path.rootfs=/host" in node["command"]
    assert node["networks"] == ["metrics"] and "ports" not in node
    jobs = {job["job_name"]: job for job in yaml.safe_load(render_prometheus_config(settings))["scrape_configs"]}
    assert jobs["node"]["static_configs"] == [{"targets": ["node-exporter:9100"], "labels": {"instance": "processing-host"}}]


def test_exporters_report_their_database_and_primaries_the_server_wide_extras(settings):
    services = compose_services(settings)
    for name in ("exporter-shop", "exporter-billing", "exporter-ledger"):
        assert "--extend.query-path=/etc/postgres_exporter/queries.yaml" in services[name]["command"]
        assert "--collector.stat_statements" not in services[name]["command"]  # nobody said it is there
    for collector in ("postmaster", "database_wraparound", "stat_checkpointer"):
        assert f"--collector.{collector}" in services["exporter-shop"]["command"]
        assert f"--collector.{collector}" not in services["exporter-billing"]["command"]
    queries = rendered(settings, "exporters/billing/queries.yaml")
    assert (queries.mode, queries.uid) == (0o400, 65534) and queries.on_change == ("restart:exporter-billing",)
    query = yaml.safe_load(queries.content)["pgmon_database"]
    assert query["query"] == "SELECT current_database() AS datname, 1 AS info"


def test_docs_list_every_threshold_with_its_default():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \| (?:database|server|host) \|", docs, re.MULTILINE))
    defaults = {key: value if isinstance(value, str) else f"{value:g}"
                for key, value in AlertThresholds().model_dump().items()}
    assert rows == defaults


def test_pg_stat_statements_is_read_where_a_database_says_it_is_and_once_per_server():
    databases = group_data()["pgmon_databases"]
    databases[1] = {**databases[1], "pg_stat_statements": True}
    services = compose_services(build_settings(group_data(pgmon_databases=databases), ENVIRON))
    assert "--collector.stat_statements" in services["exporter-billing"]["command"]
    assert "--collector.stat_statements" not in services["exporter-shop"]["command"]
    databases[0] = {**databases[0], "pg_stat_statements": True}
    message = error_for(group_data(pgmon_databases=databases))
    assert ("pgmon_databases[1].pg_stat_statements: shop on the same server db1:5432 already reads "
            "pg_stat_statements") in message
