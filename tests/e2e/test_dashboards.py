"""pgmon's dashboards end to end: every panel shows data for every database, and Grafana keeps them.

One deployment of its own (``SITE``, beside test_deploy's), a short e-commerce workload on the test
databases (a read-heavy catalogue, a write-heavy cart, a long report holding a lock), then every
target of every dashboard, as Grafana serves it, queried with its variables resolved for each
database (tests/e2e/grafana_queries.py). The tests in this module run in file order.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from tasks.render.grafana import DASHBOARD_9628_UID, provisioned_dashboard_uids

from .grafana_queries import Dashboard, Prometheus
from .lab import (
    DASHBOARD_FIXTURE,
    POSTGRES17,
    POSTGRES18,
    SCRAPE_SECONDS,
    Deployment,
    Site,
    prometheus_query,
    wait_until,
)
from .test_deploy import assert_ok, changed_operations

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-dash",
    project="pgmon-dash",
    prometheus_port=21090,
    alertmanager_port=21093,
    grafana_port=21000,
)
# billing shares shop's server: its server-wide rows come from shop's exporter. orders is on PostgreSQL 17,
# reports on 18 (shop, billing and ledger on 15).
NAMES = ["shop", "billing", "ledger", "orders", "reports"]
# Servers where PostgreSQL 17 moved pg_stat_bgwriter's checkpoint and backend counters (docs/dashboards.md).
SINCE_PG17 = (POSTGRES17, POSTGRES18)
UIDS = provisioned_dashboard_uids()
SCHEMA = "pgmon_dash"
REPORT = "pgmon-dash-report"  # application_name of the long-running report sessions

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.catalogue (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
CREATE TABLE {SCHEMA}.cart_items (id serial PRIMARY KEY, cart int NOT NULL, product int NOT NULL, qty int NOT NULL);
CREATE INDEX ON {SCHEMA}.cart_items (cart);
INSERT INTO {SCHEMA}.catalogue SELECT g, 'product ' || g, g % 97 FROM generate_series(1, 5000) g;
"""
# Carts are written, the catalogue is read: by index (product pages) and in full (a price report).
WORKLOAD = f"""
INSERT INTO {SCHEMA}.cart_items (cart, product, qty) SELECT g % 300, g % 5000 + 1, 1 FROM generate_series(1, 3000) g;
UPDATE {SCHEMA}.cart_items SET qty = qty + 1 WHERE cart < 100;
DELETE FROM {SCHEMA}.cart_items WHERE cart >= 200;
SELECT count(*) FROM {SCHEMA}.cart_items WHERE cart = 42;
SELECT name FROM {SCHEMA}.catalogue WHERE id = 42;
SELECT name FROM {SCHEMA}.catalogue WHERE id = 4242;
SELECT sum(price) FROM {SCHEMA}.catalogue;
SELECT c.cart, sum(p.price * c.qty) FROM {SCHEMA}.cart_items c JOIN {SCHEMA}.catalogue p ON p.id = c.product GROUP BY 1;
"""
# A report that runs for a while: an active session holding a lock, as Active sessions and Lock tables show.
LONG_REPORT = f"""
SET application_name = '{REPORT}';
BEGIN;
SELECT count(*) FROM {SCHEMA}.catalogue;
SELECT pg_sleep(600);
COMMIT;
"""


def server_of(db) -> str:
    return f"host.docker.internal:{db.port}"


def grafana(stack: Deployment, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
    auth = auth or ("admin", stack.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    return requests.get(f"http://127.0.0.1:{SITE.grafana_port}{path}", auth=auth, timeout=10)


def served(stack: Deployment, uid: str) -> dict:
    response = grafana(stack, f"/api/dashboards/uid/{uid}")
    assert response.status_code == 200, (uid, response.text)
    return response.json()


@pytest.fixture(scope="module")
def stack(new_deployment):
    with new_deployment("dash-project", site=SITE) as deployment:
        deployment.configure(NAMES)
        assert_ok(deployment.run())
        yield deployment


@pytest.fixture(scope="module")
def databases(stack):
    return [db for db in stack.databases if db.name in NAMES]


@pytest.fixture(scope="module")
def workload(stack, lab, databases):
    """The workload, run once; waits until Prometheus has seen it and the recording rules have rated it."""
    for db in databases:
        lab.psql(db.port, db.dbname, SETUP)
    for (
        db
    ) in databases:  # a rate sees only what happens after a sample of the new, empty cart table
        scraped = (
            f'pg_stat_user_tables_n_tup_ins{{database="{db.name}", relname="cart_items"}} == 0'
        )
        wait_until(
            f"{db.name}'s new tables scraped",
            lambda q=scraped: prometheus_query(q, port=SITE.prometheus_port),
            60,
        )

    def report(db):
        try:
            lab.psql(db.port, db.dbname, LONG_REPORT)
        except subprocess.CalledProcessError:
            pass  # ended below by pg_terminate_backend, as intended

    reports = [threading.Thread(target=report, args=(db,)) for db in databases]
    for thread in reports:
        thread.start()
    try:
        for db in databases:
            lab.psql(db.port, db.dbname, WORKLOAD)
        for db in databases:
            # Seen for 10 s on end: a range query's steps (a few seconds apart) cannot miss it.
            where = f'server="{server_of(db)}", datname="{db.dbname}"'
            seen = (
                f'min_over_time(sum(pg_stat_activity_count{{{where}, state="active"}})[10s:1s]) > 0 '
                f'and min_over_time(sum(pg_locks_count{{{where}, mode="accesssharelock"}})[10s:1s]) > 0'
            )
            wait_until(
                f"the report on {db.name} seen by Prometheus",
                lambda q=seen: prometheus_query(q, port=SITE.prometheus_port),
                60,
            )
    finally:
        for port in {db.port for db in databases}:
            lab.psql(
                port,
                "postgres",
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = '{REPORT}'",
            )
        for thread in reports:
            thread.join(timeout=30)
    for db in databases:
        rated = (
            f'table:pg_stat_user_tables_n_tup_del:rate{{database="{db.name}", relname="cart_items"}} > 0 '
            f"and on (database) database:pg_stat_database_xact:rate > 0"
        )
        wait_until(
            f"recording rules over {db.name}'s workload",
            lambda q=rated: prometheus_query(q, port=SITE.prometheus_port),
            60,
        )
    yield
    for db in databases:
        try:
            lab.psql(db.port, db.dbname, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;")
        except subprocess.CalledProcessError:
            pass  # a server another suite stopped keeps the schema until the next SETUP drops it


def picks(db) -> dict[str, str]:
    """What a user picks in the drop-downs to look at ``db``: its server, and the database by pgmon's name."""
    return {"server": server_of(db), "database": db.name, "instance": db.name}


def test_grafana_serves_pgmon_dashboards_provisioned(stack):
    for uid in UIDS:
        body = served(stack, uid)
        assert body["meta"]["provisioned"] is True, uid
        assert "${DS_PROMETHEUS}" not in json.dumps(body["dashboard"])
    assert (
        grafana(stack, f"/api/dashboards/uid/{UIDS[0]}", auth=("admin", "admin")).status_code == 401
    )
    assert (
        requests.get(f"http://127.0.0.1:{SITE.grafana_port}/api/search", timeout=10).status_code
        == 401
    )


@pytest.mark.parametrize("uid", UIDS)
def test_every_panel_shows_data_for_every_database(stack, workload, databases, uid):
    dashboard = Dashboard(
        served(stack, uid)["dashboard"], Prometheus(SITE.prometheus_port), SCRAPE_SECONDS
    )
    targets = list(dashboard.targets())
    assert len(targets) >= 10, f"{uid}: only {len(targets)} query targets"
    empty = {
        db.name: dashboard.empty_panels(picks(db), int(lab_version(stack, db).split(".")[0]))
        for db in databases
    }
    report = "\n".join(f"{name}: {line}" for name, lines in empty.items() for line in lines)
    assert not report, f"{uid}, panels without data:\n{report}"


def lab_version(stack: Deployment, db) -> str:
    return stack.lab.psql(db.port, db.dbname, "SHOW server_version").strip()


@pytest.mark.parametrize("server", SINCE_PG17, ids=lambda server: server.version)
def test_counters_postgresql_17_moved_come_from_where_it_moved_them(
    stack, workload, databases, server
):
    """On PostgreSQL 17 and 18, 9628's checkpoint lines read pg_stat_checkpointer and its backend-write lines
    pg_stat_io (pgmon's query); no older server has either series, and no 9628 panel is empty."""
    db = next(db for db in databases if db.port == server.port)
    assert lab_version(stack, db).startswith(f"{server.version}.")
    port = SITE.prometheus_port
    newer = "|".join(server_of(newer) for newer in SINCE_PG17)
    for moved, old in (
        ("pg_stat_checkpointer_write_time_total", "pg_stat_bgwriter_checkpoint_write_time_total"),
        ("pgmon_stat_io_backend_writes", "pg_stat_bgwriter_buffers_backend_total"),
        ("pgmon_stat_io_backend_fsyncs", "pg_stat_bgwriter_buffers_backend_fsync_total"),
    ):
        assert prometheus_query(f'{moved}{{server="{server_of(db)}"}}', port=port), moved
        assert not prometheus_query(f'{old}{{server="{server_of(db)}"}}', port=port), old
        assert not prometheus_query(f'{moved}{{server!~"{newer}"}}', port=port), moved
    adapted = Dashboard(
        served(stack, DASHBOARD_9628_UID)["dashboard"], Prometheus(port), SCRAPE_SECONDS
    )
    assert adapted.empty_panels(picks(db)) == []


def test_the_published_9628_would_show_empty_panels_here(stack, workload, databases):
    """Proves the check above can fail: 9628 as published, with no adaptation, leaves panels empty."""
    published = Dashboard(
        json.loads(DASHBOARD_FIXTURE.read_text()), Prometheus(SITE.prometheus_port), SCRAPE_SECONDS
    )
    for db in databases:
        empty = published.empty_panels(picks(db))
        assert any("'Buffers (bgwriter)' has no data" in line for line in empty), (
            db.name
        )  # names without _total
    billing = next(
        db for db in databases if db.name == "billing"
    )  # its server-wide rows carry instance="shop"
    assert any(
        "'Transactions' has no data" in line for line in published.empty_panels(picks(billing))
    )


def test_rerun_changes_no_dashboard(stack):
    versions = {uid: served(stack, uid)["dashboard"]["version"] for uid in UIDS}
    output = assert_ok(stack.run())
    assert changed_operations(output) == []
    assert {uid: served(stack, uid)["dashboard"]["version"] for uid in UIDS} == versions


def test_a_changed_dashboard_file_updates_the_dashboard_in_place(stack, tmp_path):
    before = served(stack, DASHBOARD_9628_UID)["dashboard"]
    containers = stack.containers()
    edited = json.loads(DASHBOARD_FIXTURE.read_text()) | {"title": "PostgreSQL Database (edited)"}
    (tmp_path / "9628.json").write_text(json.dumps(edited))
    stack.configure(NAMES, pgmon_dashboard_9628={"file": str(tmp_path / "9628.json")})
    try:
        output = assert_ok(stack.run())
        assert changed_operations(output) == [
            "Configure the pgmon stack | Write pgmon configuration"
        ]

        def rescanned():
            current = served(stack, DASHBOARD_9628_UID)["dashboard"]
            return current if current["title"] == edited["title"] else None

        after = wait_until("Grafana to rescan the dashboard folder", rescanned, 60)
        assert (after["id"], after["uid"], after["version"]) == (
            before["id"],
            before["uid"],
            before["version"] + 1,
        )
        assert stack.containers() == containers  # no restart, no recreate
    finally:
        stack.configure(NAMES)
        assert_ok(stack.run())


def test_a_recreated_grafana_keeps_its_datasource_dashboards_and_password(stack):
    old = stack.containers()["grafana"]
    subprocess.run(
        ["docker", "rm", "-f", f"{SITE.project}-grafana"], check=True, capture_output=True
    )
    output = assert_ok(stack.run())
    assert "pgmon: grafana" in output and stack.containers()["grafana"] != old
    assert grafana(stack, "/api/datasources/uid/pgmon-prometheus/health").status_code == 200
    for uid in UIDS:
        served(stack, uid)


def test_the_admin_password_reaches_a_kept_volume_when_base_dir_is_new(stack):
    """Grafana applies GF_SECURITY_ADMIN_PASSWORD only when it creates its database: a base_dir written
    afresh (here: only its password file) next to the old volume must still get the password through."""
    old_password = stack.secrets["PGMON_E2E_GRAFANA_PASSWORD"]
    Path(SITE.base_dir, "grafana/secrets/admin_password").unlink()
    stack.secrets["PGMON_E2E_GRAFANA_PASSWORD"] = "fr3sh-b@se'dir\"" + old_password[-6:]
    output = assert_ok(stack.run())
    assert "healthy, datasource answers" in output  # verification signed in with the new password
    assert grafana(stack, "/api/user").status_code == 200
    assert grafana(stack, "/api/user", auth=("admin", old_password)).status_code == 401
