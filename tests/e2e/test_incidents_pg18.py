"""Incidents caused for real on PostgreSQL 18 (the lab's `reports`, alone on its server in a container), and
the messages that reach Discord and Telegram.

The same way as test_incidents.py, whose helpers these tests use: one deployment of its own (``SITE``, so
that it can run beside the other suites) with thresholds shortened through group_data, warnings routed to
Telegram too; for each incident: cause it, wait for the FIRING message naming the alert and the database at
both capture servers, end it, wait for the RESOLVED one. The tests run in file order.
"""

from __future__ import annotations

import time

import pytest

from .lab import POSTGRES18_PORT, Site, prometheus_query, wait_until
from .test_incidents import (
    TABLE,
    Session,
    assert_no_alert_while_healthy,
    both_channels,
    deploy_with_short_thresholds,
    end_sessions,
    plain,
    postgres_down_then_back,
    sessions_where,
)

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-pg18",
    project="pgmon-pg18",
    prometheus_port=19190,
    alertmanager_port=19193,
    grafana_port=13100,
)
DATABASE = "reports"
IDLE = (
    'ALERTS{alertname="IdleInTransaction"}'  # pending or firing; reports is the site's one database
)
PORT = POSTGRES18_PORT
DATABASE_THRESHOLDS = {
    DATABASE: {
        "idle_in_transaction_seconds": 5,
        "idle_in_transaction_for": "2s",
        "long_transaction_seconds": 8,
        "long_transaction_for": "2s",
        "parallel_workers_window": "20s",
        "parallel_workers_for": "2s",
        "parallel_workers_min": 1,
        "dead_tuples_min": 100,
        "autovacuum_ineffective_window": "20s",
        "autovacuum_ineffective_for": "2s",
    },
}
# Parallel scans in a session that allows no parallel worker: each plans workers the server never launches.
STARVED_PARALLEL_SCANS = (
    "SET max_parallel_workers = 0; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
    "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2; "
    + "SELECT count(*) FROM pgmon_e2e; "
    * 10
)
PLANNED = (
    "SELECT parallel_workers_to_launch FROM pg_stat_database WHERE datname = current_database()"
)


@pytest.fixture(scope="module")
def incidents(lab, new_deployment):
    with new_deployment("pg18-project", site=SITE) as deployment:
        assert lab.psql(PORT, DATABASE, "SHOW server_version").startswith("18.")
        lab.psql(PORT, DATABASE, TABLE)
        deploy_with_short_thresholds(deployment, [DATABASE], DATABASE_THRESHOLDS)
        yield deployment
        end_sessions(lab, (PORT,))
        lab.psql(PORT, DATABASE, "DROP TABLE IF EXISTS pgmon_e2e")


@pytest.fixture
def fresh(incidents):
    """Capture servers emptied before a test, and its sessions ended after it whatever happened."""
    incidents.discord.clear()
    incidents.telegram.clear()
    yield incidents
    end_sessions(incidents.lab, (PORT,))


def test_a_healthy_postgresql_18_raises_nothing(fresh):
    """postgres_exporter's collectors all work on 18: no scrape or collector error, no false alarm."""
    assert_no_alert_while_healthy(1, port=SITE.prometheus_port)


def test_a_session_holding_a_lock_others_wait_on(fresh):
    lab = fresh.lab
    holder, waiter = Session(PORT, DATABASE), Session(PORT, DATABASE)
    try:
        holder.run("BEGIN; UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        wait_until(
            "the row locked",
            lambda: sessions_where(lab, PORT, "state = 'idle in transaction'") == 1,
            10,
        )
        waiter.run("UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        for received in both_channels(fresh, "LockContention", DATABASE):
            assert (
                "waiting on locks" in received.text
                and f"host.docker.internal:{PORT}" in received.text
            )
        holder.run("COMMIT;")
        wait_until(
            "the waiter served",
            lambda: sessions_where(lab, PORT, "wait_event_type = 'Lock'") == 0,
            10,
        )
    finally:
        holder.close()
        waiter.close()
    both_channels(fresh, "LockContention", DATABASE, status="RESOLVED")


def test_a_transaction_left_open(fresh):
    session = Session(PORT, DATABASE)
    try:
        session.run("BEGIN; SELECT 1;")
        for received in both_channels(fresh, "IdleInTransaction", DATABASE):
            assert "fix the missing COMMIT" in received.text
        session.run("ROLLBACK;")
    finally:
        session.close()
    both_channels(fresh, "IdleInTransaction", DATABASE, status="RESOLVED")


def test_a_long_running_transaction(fresh):
    """A transaction busy for longer than long_transaction_seconds: a long report, not an idle session."""
    lab = fresh.lab
    # Judged on Prometheus's record, not on messages: the earlier tests' idle sessions may still have a
    # RESOLVED on its way to a chat when this one starts.
    wait_until(
        "no idle-session alert left", lambda: not prometheus_query(IDLE, SITE.prometheus_port), 60
    )
    started = time.monotonic()
    session = Session(PORT, DATABASE)
    try:
        session.run("BEGIN; SELECT count(*) FROM pgmon_e2e; SELECT pg_sleep(600);")
        wait_until(
            "the report running", lambda: sessions_where(lab, PORT, "state = 'active'") == 1, 10
        )
        for received in both_channels(fresh, "LongRunningTransaction", DATABASE):
            assert "holds back VACUUM" in received.text
        since = f"{int(time.monotonic() - started) + 1}s"
        idle = prometheus_query(f"count_over_time({IDLE}[{since}])", SITE.prometheus_port)
        assert not idle, idle  # never idle, not even pending
    finally:
        end_sessions(lab, (PORT,))  # the report ends: its psql then reads the end of its input
        session.close()
    both_channels(fresh, "LongRunningTransaction", DATABASE, status="RESOLVED")


def test_parallel_workers_planned_but_never_launched(fresh):
    """A rule on a statistic PostgreSQL 18 added (pg_stat_database.parallel_workers_to_launch, pgmon's query)."""
    lab = fresh.lab
    before = int(lab.psql(PORT, DATABASE, PLANNED))
    lab.psql(PORT, DATABASE, STARVED_PARALLEL_SCANS)
    planned = int(lab.psql(PORT, DATABASE, PLANNED))
    assert planned >= before + 10, (before, planned)  # each scan planned a worker
    for received in both_channels(fresh, "ParallelWorkersNotLaunched", DATABASE):
        assert "100% of planned parallel workers not launched" in received.text
        assert "runbooks.md#parallelworkersnotlaunched" in received.text
    both_channels(fresh, "ParallelWorkersNotLaunched", DATABASE, status="RESOLVED")


BLOAT = "pgmon_e2e_bloat"


def test_autovacuum_that_cannot_clean_a_table_behind_an_old_snapshot(fresh):
    """A rule on a statistic PostgreSQL 18 added (pg_stat_all_tables.total_autovacuum_time, pgmon's query): a
    session's snapshot older than the deleted rows keeps them, and autovacuum, woken every second, scans the
    table again and again and removes nothing. Ends when the session does."""
    lab = fresh.lab
    lab.psql(
        PORT,
        DATABASE,
        f"DROP TABLE IF EXISTS {BLOAT}; CREATE TABLE {BLOAT} (id int) WITH "
        "(autovacuum_vacuum_threshold = 50, autovacuum_vacuum_scale_factor = 0); "
        f"INSERT INTO {BLOAT} SELECT generate_series(1, 5000)",
    )
    lab.psql(
        PORT, "postgres", "ALTER SYSTEM SET autovacuum_naptime = '1s'; SELECT pg_reload_conf()"
    )
    holder = Session(PORT, DATABASE)
    try:
        holder.run("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_sleep(600);")
        wait_until(
            "the snapshot held", lambda: sessions_where(lab, PORT, "state = 'active'") == 1, 10
        )
        lab.psql(PORT, DATABASE, f"DELETE FROM {BLOAT} WHERE id > 1000")
        for received in both_channels(fresh, "AutovacuumIneffective", DATABASE):
            assert f"Autovacuum cannot clean table public.{BLOAT}" in plain(received)
            assert "backend_xmin" in plain(received)  # the hint: what holds the horizon back
    finally:
        end_sessions(lab, (PORT,))
        holder.close()
        lab.psql(PORT, "postgres", "ALTER SYSTEM RESET autovacuum_naptime; SELECT pg_reload_conf()")
    both_channels(fresh, "AutovacuumIneffective", DATABASE, status="RESOLVED")
    # The held snapshot was a long transaction too: its alert ends before the next test.
    both_channels(fresh, "LongRunningTransaction", DATABASE, status="RESOLVED")
    lab.psql(PORT, DATABASE, f"DROP TABLE {BLOAT}")


def test_postgresql_18_down_reaches_both_channels_then_resolves(fresh):
    postgres_down_then_back(fresh, PORT, DATABASE)
