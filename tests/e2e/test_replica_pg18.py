"""PostgreSQL 18 as a primary and its streaming replica: pgmon's statistics dashboard (pgmon-statistics) has data
on both, where each statistic exists.

The lab's 18 (5435, reports) is the primary; ``POSTGRES18_REPLICA`` (5439) is made from it by pg_basebackup
when this suite starts and removed after, without a replication slot, so that no WAL is held for it on the
primary the other suites share. One deployment of its own (``SITE``) watches reports on both servers.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tasks.render.exporters import DATABASE_QUERIES, SERVER_QUERIES, TABLE_QUERIES

from .grafana_queries import Dashboard, Prometheus, wait_for_every_panel
from .lab import (
    DATABASES,
    POSTGRES18_PORT,
    POSTGRES18_REPLICA,
    REPO,
    SCRAPE_SECONDS,
    Site,
    prometheus_query,
    wait_until,
)
from .test_dashboards import picks
from .test_deploy import assert_ok

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-pg18-replica",
    project="pgmon-pg18-replica",
    prometheus_port=19690,
    alertmanager_port=19693,
    grafana_port=13600,
)
PRIMARY = next(db for db in DATABASES if db.port == POSTGRES18_PORT)
STANDBY = replace(PRIMARY, name="standby", port=POSTGRES18_REPLICA.port)  # its copy of reports
STATISTICS = REPO / "files/grafana/dashboards/pgmon-statistics.json"
# What the statistics read: a table written, vacuumed and analyzed on the primary (its I/O, WAL, vacuum and
# analyze times), read by parallel scans on both.
SETUP = """
DROP TABLE IF EXISTS pgmon_e2e_stats;
CREATE TABLE pgmon_e2e_stats AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g;
DELETE FROM pgmon_e2e_stats WHERE id % 3 = 0;
VACUUM ANALYZE pgmon_e2e_stats;
CHECKPOINT;
"""
PARALLEL_SCANS = (
    "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; "
    + "SELECT count(*) FROM pgmon_e2e_stats; " * 5
)


@pytest.fixture(scope="module")
def pair(lab, new_deployment):
    lab.start_cluster(POSTGRES18_REPLICA.port)
    try:
        wait_until(
            "the 18 replica streaming from its primary",
            lambda: (
                lab.psql(
                    PRIMARY.port,
                    "postgres",
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                ).strip()
                == "1"
            ),
            60,
        )
        with new_deployment(
            "pg18-replica-project", databases=(PRIMARY, STANDBY), site=SITE
        ) as deployment:
            deployment.configure([PRIMARY.name, STANDBY.name])
            assert_ok(deployment.run())
            yield deployment
    finally:
        lab.psql(PRIMARY.port, PRIMARY.dbname, "DROP TABLE IF EXISTS pgmon_e2e_stats")
        lab.remove_container_server(POSTGRES18_REPLICA)


def test_every_statistics_panel_has_data_on_the_18_primary_and_its_replica(lab, pair):
    assert lab.psql(STANDBY.port, STANDBY.dbname, "SELECT pg_is_in_recovery()").strip() == "t"
    lab.psql(PRIMARY.port, PRIMARY.dbname, SETUP)
    wait_until(
        "the table on the replica",
        lambda: (
            lab.psql(
                STANDBY.port, STANDBY.dbname, "SELECT to_regclass('pgmon_e2e_stats') IS NOT NULL"
            ).strip()
            == "t"
        ),
        30,
    )
    roles = {
        row["metric"]["database"]: row["value"][1]
        for row in prometheus_query("pg_replication_is_replica", port=SITE.prometheus_port)
    }
    assert roles == {PRIMARY.name: "0", STANDBY.name: "1"}, roles
    model = json.loads(STATISTICS.read_text())

    def empty_panels() -> dict[str, list[str]]:
        for db in (PRIMARY, STANDBY):
            lab.psql(db.port, db.dbname, PARALLEL_SCANS)
        dashboard = Dashboard(model, Prometheus(SITE.prometheus_port), SCRAPE_SECONDS)
        return {
            db.name: lines
            for db in (PRIMARY, STANDBY)
            if (lines := dashboard.empty_panels(picks(db), 18))
        }

    wait_for_every_panel(empty_panels, 180, interval=10)


ODD_TABLE = (
    'odd "q": <x>& é\x01z'  # quotes, XML's markup, and a control character XML 1.0 cannot hold
)
PLAIN = "pgmon_e2e_plain"  # beside it: what the failing query lost with it


def test_a_table_named_with_a_control_character_keeps_every_table_in_the_18_statistics(lab, pair):
    """query_to_xml fails on a control character, and with it the whole query: pgmon's queries put U+FFFD in
    its place (since_version), and the other tables keep their series."""
    quoted = '"' + ODD_TABLE.replace('"', '""') + '"'
    lab.psql(
        PRIMARY.port, PRIMARY.dbname, f"CREATE TABLE {quoted} (v int); CREATE TABLE {PLAIN} (v int)"
    )
    try:
        query = f'pgmon_table_maintenance_vacuum_seconds{{database="{PRIMARY.name}"}}'
        wait_until(
            "the odd table's series",
            lambda: (
                {
                    row["metric"]["relname"]
                    for row in prometheus_query(query, port=SITE.prometheus_port)
                }
                >= {ODD_TABLE.replace("\x01", "\ufffd"), PLAIN}
            ),
            60,
            interval=2,
        )
    finally:
        lab.psql(PRIMARY.port, PRIMARY.dbname, f"DROP TABLE IF EXISTS {quoted}, {PLAIN}")


def test_every_pgmon_query_runs_in_a_latin1_database_with_an_odd_table(lab, pair):
    """U+FFFD has no place in LATIN1: chr(65533) fails as soon as it is planned, which would empty every pgmon
    query of such a database, odd names or not. Run on the server itself, each query as the exporters get it."""
    latin1 = "pgmon_e2e_latin1"
    lab.psql(PRIMARY.port, "postgres", f"DROP DATABASE IF EXISTS {latin1}")
    lab.psql(
        PRIMARY.port,
        "postgres",
        f"CREATE DATABASE {latin1} ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    try:
        lab.psql(PRIMARY.port, latin1, 'CREATE TABLE "odd\x01" (v int)')
        queries = {**SERVER_QUERIES, **DATABASE_QUERIES, **TABLE_QUERIES}
        answers = {
            name: lab.psql(PRIMARY.port, latin1, q["query"] + ";") for name, q in queries.items()
        }
        assert "|odd?|" in answers["pgmon_table_maintenance"], answers["pgmon_table_maintenance"]
    finally:
        lab.psql(PRIMARY.port, "postgres", f"DROP DATABASE IF EXISTS {latin1}")
