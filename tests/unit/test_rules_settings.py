"""Alert thresholds, routing and the stack additions the rules need: settings in, configs out."""

import json
import re
from pathlib import Path

import yaml

from tasks.render.compose import compose_services
from tasks.render.exporters import DATABASE_QUERIES, SERVER_QUERIES, TABLE_QUERIES, since_version
from tasks.render.prometheus import render_prometheus_config, render_rules
from tasks.settings import HOST_THRESHOLDS, SERVER_THRESHOLDS, AlertThresholds, build_settings
from tasks.stack_model import EXPORTER_UID, TEMPLATES_DIR

from .conftest import (
    ENVIRON,
    alert_rules,
    error_for,
    group_data,
    pgmon_query_series,
    rendered,
    with_thresholds,
)


def test_threshold_mistakes_name_the_key_and_the_fix():
    message = error_for(
        with_thresholds(
            0,
            {"host_cpu_percent": 50, "idle_in_transacton_seconds": 60},
            pgmon_alert_thresholds={
                "postgres_down_for": "2m",
                "connections_percent": 150,
                "deadlocks_window": "30s",
            },
        )
    )
    assert (
        "pgmon_databases[0].alert_thresholds.host_cpu_percent: is about the processing host, not a database; "
        "set it in pgmon_alert_thresholds"
    ) in message
    assert (
        "pgmon_databases[0].alert_thresholds.idle_in_transacton_seconds: unknown alert threshold; "
        "did you mean idle_in_transaction_seconds?"
    ) in message
    assert (
        "pgmon_alert_thresholds.postgres_down_for: set it as pgmon_alert_timing.postgres_down_for"
        in message
    )
    assert (
        "pgmon_alert_thresholds.connections_percent: Input should be less than or equal to 100"
        in message
    )


def test_windows_must_hold_several_scrapes():
    message = error_for(
        with_thresholds(2, {"slow_query_window": "1m"}, pgmon_scrape_interval_seconds=30)
    )
    assert (
        "pgmon_databases[2].alert_thresholds.slow_query_window: '1m' holds fewer than 4 scrapes (30s apart); "
        "make it at least 120s"
    ) in message
    assert "pgmon_alert_thresholds." not in message  # the defaults (10m, 15m) are long enough


def test_a_forecast_needs_an_hour_and_its_critical_horizon_nearer_than_its_warning():
    message = error_for(group_data(pgmon_alert_thresholds={"forecast_window": "30m"}))
    assert "pgmon_alert_thresholds.forecast_window: '30m' is too short for a forecast" in message
    assert "make it at least 1h" in message
    for window in ("12h", "40d"):  # hourly points; past what Prometheus keeps
        message = error_for(with_thresholds(2, {"connections_forecast_window": window}))
        assert (
            f"pgmon_databases[2].alert_thresholds.connections_forecast_window: '{window}' is outside 1d to 30d"
        ) in message
    message = error_for(with_thresholds(1, {"forecast_warning_days": 2}))
    assert (
        "pgmon_databases[1].alert_thresholds.forecast_critical_days: 3 is not below forecast_warning_days "
        "(2); the critical horizon is the nearer one, make it smaller"
    ) in message
    assert "pgmon_alert_thresholds." not in message and "pgmon_databases[0]" not in message
    message = error_for(group_data(pgmon_alert_thresholds={"forecast_critical_days": 14}))
    assert "pgmon_alert_thresholds.forecast_critical_days: 14 is not below" in message
    assert "pgmon_databases[" not in message  # said once, where it was set


def test_databases_of_one_server_cannot_disagree_on_a_server_threshold():
    databases = group_data()["pgmon_databases"]
    databases[0] = {**databases[0], "alert_thresholds": {"connections_percent": 70}}
    databases[1] = {**databases[1], "alert_thresholds": {"connections_percent": 75}}
    message = error_for(group_data(pgmon_databases=databases))
    assert (
        "pgmon_databases[1].alert_thresholds.connections_percent: billing shares db1:5432 with shop, "
        "which sets 70.0; connections_percent judges the whole server"
    ) in message


def test_a_server_threshold_set_on_one_database_is_its_server_neighbours_too():
    """shop sets a server-wide and a per-database key; billing shares db1 with it, ledger is on db2."""
    settings = build_settings(
        with_thresholds(0, {"connections_percent": 70, "long_transaction_seconds": 60}), ENVIRON
    )
    cfg = settings.config
    each = cfg.thresholds_for_each(cfg.databases)
    shop, billing, ledger = (each[name] for name in ("shop", "billing", "ledger"))
    assert (shop.connections_percent, shop.long_transaction_seconds) == (70, 60)
    assert billing.connections_percent == 70
    assert billing.long_transaction_seconds == cfg.alert_thresholds.long_transaction_seconds
    assert ledger == cfg.alert_thresholds
    assert each == {db.name: cfg.thresholds_for(db) for db in cfg.databases}


def test_a_database_override_applies_to_its_server_and_to_it_alone():
    settings = build_settings(
        with_thresholds(1, {"connections_percent": 70, "long_transaction_seconds": 60}), ENVIRON
    )
    rules = alert_rules(settings)
    connections = {
        rule["labels"]["thresholds"]: rule["expr"] for rule in rules["TooManyConnections"]
    }
    assert connections.keys() == {"db1:5432", "default"}
    assert 'server="db1:5432"' in connections["db1:5432"] and connections["db1:5432"].endswith(
        "> 70"
    )
    # The default copy: every server the others do not name (those discovered too).
    assert 'server!="db1:5432"' in connections["default"] and connections["default"].endswith(
        "> 80"
    )
    long_running = {
        rule["labels"]["thresholds"]: rule["expr"] for rule in rules["LongRunningTransaction"]
    }
    assert (
        'pgmon_database_info{database="billing"}' in long_running["billing"]
        and "> 60)" in long_running["billing"]
    )
    assert 'pgmon_database_info{database!="billing"}' in long_running["default"]


def test_adding_a_database_changes_no_rule():
    settings = build_settings(group_data(), ENVIRON)
    databases = group_data()["pgmon_databases"] + [
        {"name": "extra", "host": "db3", "dbname": "x", "user": "u", "password_env": "PW_LEDGER"}
    ]
    assert render_rules(
        build_settings(group_data(pgmon_databases=databases), ENVIRON)
    ) == render_rules(settings)
    assert "extra" not in render_rules(settings).decode()


def test_server_matchers_escape_regex_and_string_characters():
    override = {"alert_thresholds": {"restart_window": "1h"}}
    databases = group_data()["pgmon_databases"] + [
        {"name": "odd", "host": "fe80::1", "dbname": "o", "user": "u", "password_env": "PW_LEDGER"}
        | override
    ]
    databases[2] = {**databases[2], **override}
    rules = alert_rules(build_settings(group_data(pgmon_databases=databases), ENVIRON))
    by_thresholds = {rule["labels"]["thresholds"]: rule for rule in rules["PostgresRestarted"]}
    assert (
        r'server=~"db2:5433|\\[fe80::1\\]:5432"'
        in by_thresholds["db2:5433, [fe80::1]:5432"]["expr"]
    )
    assert r'server!~"db2:5433|\\[fe80::1\\]:5432"' in by_thresholds["default"]["expr"]


def test_node_exporter_reads_the_host_and_is_scraped(settings):
    node = compose_services(settings)["node-exporter"]
    assert node["image"] == "prom/node-exporter:v1.11.1"
    assert (
        node["pid"] == "host"
        and node["volumes"] == ["/:/host:ro"]
        and "--path.rootfs=/host" in node["command"]
    )
    assert node["networks"] == ["metrics"] and "ports" not in node
    jobs = {
        job["job_name"]: job
        for job in yaml.safe_load(render_prometheus_config(settings))["scrape_configs"]
    }
    assert jobs["node"]["static_configs"] == [
        {"targets": ["node-exporter:9100"], "labels": {"instance": "processing-host"}}
    ]


def test_exporters_report_their_database_and_primaries_the_server_wide_extras(settings):
    services = compose_services(settings)
    for name in ("exporter-shop", "exporter-billing", "exporter-ledger"):
        assert (
            "--extend.query-path=/etc/postgres_exporter/queries.yaml" in services[name]["command"]
        )
        assert (
            "--collector.stat_statements" not in services[name]["command"]
        )  # nobody said it is there
    for collector in ("postmaster", "database_wraparound", "stat_checkpointer"):
        assert f"--collector.{collector}" in services["exporter-shop"]["command"]
        assert f"--collector.{collector}" not in services["exporter-billing"]["command"]
    queries = rendered(settings, "exporters/billing/queries.yaml")
    assert (queries.mode, queries.uid) == (0o400, EXPORTER_UID) and queries.on_change == (
        "restart:exporter-billing",
    )
    query = yaml.safe_load(queries.content)["pgmon_database"]
    assert query["query"] == "SELECT current_database() AS datname, 1 AS info"


def test_server_wide_queries_run_in_the_first_exporter_of_each_server_only(settings):
    queries = {
        name: yaml.safe_load(rendered(settings, f"exporters/{name}/queries.yaml").content)
        for name in ("shop", "billing", "ledger")
    }
    own = set(DATABASE_QUERIES) | set(TABLE_QUERIES)
    assert set(queries["billing"]) == own  # shares db1:5432 with shop
    assert set(queries["shop"]) == set(queries["ledger"]) == own | set(SERVER_QUERIES)
    server_views = "pg_stat_(wal_receiver|database|io|wal|checkpointer|progress_vacuum)|pg_settings"
    for query in SERVER_QUERIES.values():
        assert re.search(rf"\bFROM ({server_views})\b", query["query"])
    for query in [*DATABASE_QUERIES.values(), *TABLE_QUERIES.values()]:
        assert not re.search(
            r"\bpg_stat_(activity|database|replication|wal_receiver)\b", query["query"]
        )


def test_a_query_for_newer_servers_is_text_chosen_newest_first():
    sql = since_version({140000: "SELECT 'old' AS v", 180000: "SELECT 'new' AS v"}, v="text")
    newest = sql.index(
        ">= 180000 THEN 'SELECT regexp_replace(v, ''['' || chr(1) || ''-'' || chr(8) || chr(11) || chr(12) || "
        "chr(14) || ''-'' || chr(31) || '']'', chr(CASE current_setting(''server_encoding'') WHEN ''UTF8'' "
        "THEN 65533 ELSE 63 END), ''g'') AS v FROM (SELECT ''new'' AS v) AS q'"
    )
    older = sql.index(">= 140000")
    assert newest < older
    assert sql.endswith(
        "ELSE 'SELECT WHERE false' END, true, false, '') COLUMNS v text PATH 'v') AS x"
    )


def test_every_pgmon_series_the_rules_read_comes_from_an_exporter_query(settings):
    produced = pgmon_query_series()
    rules = [
        rule
        for group in yaml.safe_load(render_rules(settings))["groups"]
        for rule in group["rules"]
    ]
    read = {name for rule in rules for name in re.findall(r"\b(pgmon_[a-z_]+)", json.dumps(rule))}
    assert read and read <= produced, sorted(
        read - produced
    )  # other series serve verification (verify_stack)


def threshold_scope(key: str) -> str:
    return (
        "server" if key in SERVER_THRESHOLDS else "host" if key in HOST_THRESHOLDS else "database"
    )


def test_docs_list_every_threshold_with_its_default_and_scope():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    rows = {
        key: (default or unset, scope)
        for key, default, unset, scope in re.findall(
            r"^\| `([a-z_]+)` \| (?:`([^`]+)`|(unset)) \| (database|server|host) \|",
            docs,
            re.MULTILINE,
        )
    }
    expected = {
        key: (
            value if isinstance(value, str) else "unset" if value is None else f"{value:g}",
            threshold_scope(key),
        )
        for key, value in AlertThresholds().model_dump().items()
    }
    assert rows == expected


def test_server_thresholds_are_exactly_the_keys_the_per_server_rules_read():
    # A key read in a per-server loop but missing from SERVER_THRESHOLDS would take the first database's value
    # for the whole server; one listed there but read per database would ignore the database's override.
    template = (TEMPLATES_DIR / "prometheus" / "pgmon.rules.yml.j2").read_text()
    loops = re.findall(
        r"\[% for v in (databases|servers) %\](.*?)\[% endfor %\]", template, re.DOTALL
    )
    read = {"databases": set(), "servers": set()}
    for kind, body in loops:
        read[kind] |= set(re.findall(r"\bv\.thresholds\.(\w+)", body))
    assert read["servers"] == SERVER_THRESHOLDS
    assert not read["databases"] & SERVER_THRESHOLDS
    host_keys = set(re.findall(r"\bhost_thresholds\.(\w+)", template))
    assert host_keys and host_keys <= HOST_THRESHOLDS
    assert read["databases"] | read["servers"] | host_keys == set(AlertThresholds.model_fields)


def test_pg_stat_statements_is_read_where_a_database_says_it_is_and_once_per_server():
    databases = group_data()["pgmon_databases"]
    databases[1] = {**databases[1], "pg_stat_statements": True}
    services = compose_services(build_settings(group_data(pgmon_databases=databases), ENVIRON))
    assert "--collector.stat_statements" in services["exporter-billing"]["command"]
    assert "--collector.stat_statements" not in services["exporter-shop"]["command"]
    databases[0] = {**databases[0], "pg_stat_statements": True}
    message = error_for(group_data(pgmon_databases=databases))
    assert (
        "pgmon_databases[1].pg_stat_statements: shop on the same server db1:5432 already reads "
        "pg_stat_statements"
    ) in message


def test_data_volume_runs_out_only_where_the_volume_is_given():
    plain = alert_rules(build_settings(group_data(), ENVIRON))
    assert "DataVolumeRunsOut" not in plain and "ConnectionsRunOut" in plain
    (warning, critical) = alert_rules(
        build_settings(with_thresholds(2, {"data_volume_gib": 0.5}), ENVIRON)
    )["DataVolumeRunsOut"]
    # Only the server of the database that gave it: half a GiB, in bytes.
    assert warning["labels"]["thresholds"] == critical["labels"]["thresholds"] != "default"
    assert "clamp_min(536870912 - " in warning["expr"]
    message = error_for(group_data(pgmon_alert_thresholds={"data_volume_gib": 0}))
    assert "data_volume_gib" in message
