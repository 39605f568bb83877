"""A server under discovery on the lab (pgmon_servers): databases created and dropped while the stack runs.

PostgreSQL 17's container server holds the tenants; ``orders`` there is also listed in pgmon_databases,
so it keeps its own exporter and is never probed twice. Each created database must be scraped, and have
data on dashboard 9628, within 60 s; each dropped one must stop being scraped within 60 s and raise no
alert; a server that cannot be listed keeps its list and says so. The tests run in file order.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tasks.render.grafana import DASHBOARD_9628_UID

from .grafana_queries import Dashboard, Prometheus
from .lab import (
    POSTGRES17,
    POSTGRES_DOWN_FOR,
    SCRAPE_SECONDS,
    Site,
    prometheus_query,
    wait_until,
)
from .test_deploy import assert_ok, changed_operations

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-disc",
    project="pgmon-disc",
    prometheus_port=21190,
    alertmanager_port=21193,
    grafana_port=21100,
)
SERVER = "pg17"
PORT = POSTGRES17.port
ROLE = "pgmon_tenants"
PASSWORD = "t3n@nts:/?#%'\"`$x`&=\\"  # anything but a space (docs/many-databases.md)
PASSWORD_ENV = "PGMON_E2E_TENANTS_PASSWORD"
SERVER_ADDRESS = f"host.docker.internal:{PORT}"
FIRST = "tenant_first"  # there before the first deploy
# Created while the stack runs: one named to break a URL, a shell and JSON alike.
CREATED = ["tenant_a", "tenant_b", 'tenant_"c"/d?é%x\\y']
# postgres_exporter's probe cannot take a name with a space (it would log its connection string, password
# included): left out, and said so in the docs.
SPACED = "tenant with space"
DROPPED = CREATED[:2]
NOT_INCLUDED = "other_db"  # on the same server, left out by the include pattern
# The lighter metric set (no per-table series) for the odd one.
LIGHT = 'tenant_".*'
# A tenant's first rows, so that 9628's panels of row activity have something to show.
WORKLOAD = """
CREATE TABLE items (id int PRIMARY KEY, note text);
INSERT INTO items SELECT g, 'n' FROM generate_series(1, 100) g;
UPDATE items SET note = 'm' WHERE id <= 50;
DELETE FROM items WHERE id <= 10;
"""
# 9628 panels empty for a database at rest (sessions active, locks held: at that instant) ...
MOMENTARY = {"Active sessions", "Lock tables"}
# ... and those about the exporter's own process, which a probe of the shared probing exporter does not have.
EXPORTER_PROCESS = {"Average CPU Usage", "Average Memory Usage", "Open File Descriptors"}
SERVER_ENTRY = {
    "name": SERVER,
    "host": "host.docker.internal",
    "port": PORT,
    "user": ROLE,
    "password_env": PASSWORD_ENV,
    "sslmode": "disable",
    "include": ["tenant_.*"],
    "light": [LIGHT],
}
# Within this of CREATE DATABASE, a new database is scraped; within this of DROP DATABASE, it is not.
LATENCY_LIMIT = 60


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_label(name: str) -> str:
    return f"{SERVER}/{name}"


def selector(name: str) -> str:
    return "{database=" + json.dumps(database_label(name)) + "}"


def query(expr: str) -> list[dict]:
    return prometheus_query(expr, port=SITE.prometheus_port)


@pytest.fixture(scope="module")
def lab17(lab):
    lab.psql(
        PORT,
        "postgres",
        f"SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec\n"
        f"ALTER ROLE {ROLE} PASSWORD :'pw';\n"
        f"GRANT pg_monitor TO {ROLE};\n",
        variables={"pw": PASSWORD},
    )
    for name in [FIRST, NOT_INCLUDED, SPACED, *CREATED]:
        lab.psql(PORT, "postgres", f"DROP DATABASE IF EXISTS {quoted(name)} WITH (FORCE);")
    for name in (FIRST, NOT_INCLUDED, SPACED):
        lab.psql(PORT, "postgres", f"CREATE DATABASE {quoted(name)};")
    yield lab
    for name in [FIRST, NOT_INCLUDED, SPACED, *CREATED]:
        lab.psql(PORT, "postgres", f"DROP DATABASE IF EXISTS {quoted(name)} WITH (FORCE);")


@pytest.fixture(scope="module")
def stack(new_deployment, lab17):
    with new_deployment("discovery-project", site=SITE) as deployment:
        deployment.secrets[PASSWORD_ENV] = PASSWORD
        deployment.configure(["orders"], pgmon_servers=[SERVER_ENTRY])
        yield deployment


def test_the_deploy_lists_what_it_found(stack):
    output = assert_ok(stack.run())
    assert (
        f"server {SERVER}" in output and f"1 databases found on {SERVER_ADDRESS}: {FIRST}" in output
    ), output[-3000:]
    assert NOT_INCLUDED not in output and SPACED not in output
    # orders is listed in pgmon_databases: its own exporter, not probed again.
    assert query('pg_up{database="orders"} == 1')
    assert not query('pg_up{database="pg17/orders"}')
    assert query("pg_up" + selector(FIRST) + " == 1")


def test_the_list_is_a_file_on_the_host(stack):
    listed = json.loads(Path(SITE.base_dir, "discovered", f"{SERVER}.json").read_text())
    assert [group["labels"]["database"] for group in listed] == [database_label(FIRST)]


def latency(what: str, condition) -> float:
    start = time.monotonic()
    wait_until(what, condition, LATENCY_LIMIT)
    return time.monotonic() - start


def test_created_databases_are_scraped_within_a_minute_and_shown_on_9628(stack, lab17):
    for name in CREATED:
        lab17.psql(PORT, "postgres", f"CREATE DATABASE {quoted(name)};")
        seconds = latency(f"{name} scraped", lambda n=name: query("pg_up" + selector(n) + " == 1"))
        print(f"CREATE DATABASE {name!r} -> scraped in {seconds:.1f}s")
        lab17.psql(PORT, name, WORKLOAD)
    model = json.loads(
        Path(SITE.base_dir, "grafana", "dashboards", "postgresql-9628.json").read_text()
    )
    assert model["uid"] == DASHBOARD_9628_UID
    dashboard = Dashboard(model, Prometheus(SITE.prometheus_port), SCRAPE_SECONDS)
    # Grafana pastes a variable's value into the query unescaped: a name with a double quote breaks 9628's
    # queries in real Grafana too (docs/many-databases.md), so only the plain names are looked at there.
    for name in [n for n in CREATED if '"' not in n]:
        picked = database_label(name)
        picks = {"server": SERVER_ADDRESS, "database": picked, "instance": picked}
        wait_until(
            f"{name}'s rows on 9628",
            lambda p=picks: (
                not [
                    line
                    for line in dashboard.empty_panels(p)
                    if line.split("'")[1] not in MOMENTARY | EXPORTER_PROCESS
                ]
            ),
            LATENCY_LIMIT,
            interval=SCRAPE_SECONDS,
        )
    for name in CREATED:
        assert query("pgmon_database_info" + selector(name)), name
    # Its one table, seen by the full probe; not by the light one.
    assert query("pg_stat_user_tables_n_live_tup" + selector(CREATED[0]))
    assert not query("pg_stat_user_tables_n_live_tup" + selector(CREATED[2]))


def test_a_database_over_its_series_budget_is_named(stack):
    def series(name: str) -> float:
        (sample,) = query("scrape_samples_post_metric_relabeling" + selector(name))
        return float(sample["value"][1])

    heavy, plain, light = series(CREATED[0]), series(FIRST), series(CREATED[2])
    assert light < plain < heavy, (
        light,
        plain,
        heavy,
    )  # its table's series; none for the light one
    budget = int((plain + heavy) / 2)
    stack.configure(
        ["orders"],
        pgmon_servers=[SERVER_ENTRY],
        pgmon_alert_thresholds={"series_budget": budget, "series_budget_for": "0s"},
    )
    assert_ok(stack.run())
    over = 'ALERTS{alertname="DatabaseOverSeriesBudget", alertstate="firing", database=~"pg17/.*"}'
    named = wait_until("the budget alert", lambda: query(over), LATENCY_LIMIT)
    # The two with a table and every series; not the one without tables, nor the light one.
    assert {alert["metric"]["database"] for alert in named} == {
        database_label(name) for name in CREATED[:2]
    }


def test_dropped_databases_stop_being_scraped_and_raise_no_alert(stack, lab17):
    dropped_at = time.time()
    for name in DROPPED:
        lab17.psql(PORT, "postgres", f"DROP DATABASE {quoted(name)};")
    for name in DROPPED:
        seconds = latency(f"{name} no longer scraped", lambda n=name: not query("up" + selector(n)))
        print(f"DROP DATABASE {name!r} -> target gone in {seconds:.1f}s")
    # Long enough for any alert on them to have fired: its `for`, evaluation and a margin.
    time.sleep(
        max(0.0, dropped_at + 4 * SCRAPE_SECONDS + 2 * int(POSTGRES_DOWN_FOR[:-1]) - time.time())
    )
    window = f"{int(time.time() - dropped_at) + 10}s"
    names = "|".join(database_label(n) for n in DROPPED)
    availability = "PostgresDown|ExporterDown|ExporterScrapeError|ExporterCollectorFailed"
    fired = query(
        f'max_over_time(ALERTS{{alertstate="firing", alertname=~"{availability}", database=~"{names}"}}[{window}])'
    )
    assert fired == [], fired
    discord = [
        m.text
        for m in stack.discord.received
        if any(n in m.text for n in DROPPED) and any(a in m.text for a in availability.split("|"))
    ]
    assert discord == []
    assert query("pg_up" + selector(CREATED[2]) + " == 1"), "the one kept is still scraped"


def test_a_dry_run_says_what_the_list_on_the_host_holds(stack):
    output = assert_ok(stack.run("--dry"))
    kept = [FIRST, CREATED[2]]
    names = ", ".join(sorted(kept))
    assert (
        f"server {SERVER}: 2 databases listed on the host now ({SERVER_ADDRESS}): {names}" in output
    )


def test_a_rerun_changes_nothing(stack):
    output = assert_ok(stack.run())
    assert changed_operations(output) == []
    assert f"2 databases found on {SERVER_ADDRESS}" in output


def test_no_log_holds_the_password(stack):
    for service, container in stack.containers().items():
        logs = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, check=True
        )
        assert PASSWORD not in logs.stdout + logs.stderr, service


def test_a_server_that_cannot_be_listed_keeps_its_list_and_alerts(stack, lab17):
    listed = Path(SITE.base_dir, "discovered", f"{SERVER}.json")
    before = listed.read_text()
    lab17.stop_cluster(PORT)
    try:
        wait_until(
            "DiscoveryFailing firing",
            lambda: query(
                f'ALERTS{{alertname="DiscoveryFailing", alertstate="firing", discovered_by="{SERVER}"}}'
            ),
            180,
        )
        assert listed.read_text() == before
        # Every database found stays a target: down with its server, not forgotten.
        assert len(query(f'up{{discovered_by="{SERVER}"}}')) == 2
    finally:
        lab17.start_cluster(PORT)
    wait_until(
        "the list rewritten once the server is back",
        lambda: time.time() - listed.stat().st_mtime < 2 * SCRAPE_SECONDS,
        120,
    )
