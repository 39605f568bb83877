"""Incidents caused for real on a streaming replica and the servers around it, and the messages that reach
Discord and Telegram; maintenance silences and dashboard links, end to end.

The lab makes a primary of its own (5436, database payments) and a fresh streaming replica of it (5437,
``Lab.create_replica``: pg_basebackup -R -C -S, real replication through a physical slot), so that breaking them
touches no cluster the other suites share. One deployment of its own (``SITE``, so that it can run beside the
other suites) watches payments on the primary and ``standby`` (the replica's copy of payments), with thresholds
shortened through each database's alert_thresholds, warnings routed to Telegram too, and ``pgmon_grafana_url``
set. In file order, as one story: replication lag while replay is paused, the replica cut from its primary, a
promotion (the role change, and the slot it leaves behind on the old primary, holding WAL), then on the promoted
server (now a primary the suite owns, archiving): archiving failing, a setting waiting for a restart, sequences
near their end (with a silence on one database), dead rows with autovacuum off for a table, a table never
analyzed, temporary files, a role at its connection limit, rollbacks, checkpoints requested, and a database growing
fast towards its size limit. For each: cause it, wait for the FIRING message naming the alert and the database
or server at both capture servers, end it, wait for RESOLVED. The helpers are test_incidents.py's.
"""

from __future__ import annotations

import re
import subprocess
import threading
from typing import Self
from urllib.parse import quote_plus

import pytest

from tasks.settings import DEFAULT_RUNBOOK_BASE_URL

from .lab import REPLICA, Site, wait_until
from .test_incidents import (
    Session,
    assert_no_alert_while_healthy,
    assert_nothing_sent_about,
    both_channels,
    deploy_with_short_thresholds,
    end_sessions,
    held_back_by,
    plain,
    silence_command,
)

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-replica",
    project="pgmon-replica",
    prometheus_port=19290,
    alertmanager_port=19293,
    grafana_port=13200,
)
PRIMARY, STANDBY = (
    REPLICA.primary,
    REPLICA.replica,
)  # payments on the primary; standby, its copy on the replica
PRIMARY_SERVER, STANDBY_SERVER = (
    f"host.docker.internal:{PRIMARY.port}",
    f"host.docker.internal:{STANDBY.port}",
)
GRAFANA_URL = "https://grafana.example.com"
DATABASE_THRESHOLDS = {
    # Server-wide keys, for the primary ...
    "payments": {
        "replication_slot_inactive_for": "2s",
        "replication_slot_wal_gib": 0.01,
        "replication_slot_wal_for": "2s",
    },
    # ... and for the replica, with the database keys of standby.
    "standby": {
        "replication_lag_seconds": 3,
        "replication_lag_for": "2s",
        "replica_not_streaming_for": "2s",
        "role_change_window": "10s",
        "archive_failing_window": "20s",
        "archive_failing_for": "0s",
        "pending_restart_for": "2s",
        "role_connections_for": "2s",
        "dead_tuples_for": "2s",
        "analyze_for": "2s",
        "temp_files_gib": 0.01,
        "temp_files_window": "10s",
        "rollback_window": "10s",
        "rollback_for": "2s",
        "checkpoints_window": "10s",
        "checkpoints_for": "2s",
        "database_growth_gib": 0.01,
        "database_growth_window": "10s",
        "database_size_limit_gib": 0.05,
        "database_size_window": "10s",
        "database_size_horizon": "2m",
        "database_size_for": "2s",
    },
}
WRITES = "pgmon_e2e_writes"
APP_ROLE, APP_PASSWORD = "pgmon_e2e_app", "app-e2e-password"


class Repeating:
    """``sql`` run on ``port`` every ``every`` seconds until the ``with`` block ends: a server that keeps writing."""

    def __init__(self, lab, port: int, sql: str, every: float = 1.0):
        self.lab, self.port, self.sql, self.every = lab, port, sql, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.lab.psql(self.port, "payments", self.sql)
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def dashboard_link(server: str, database: str | None = None) -> str:
    """Dashboard 9628 at GRAFANA_URL on ``server`` (and ``database``), as every alert's `dashboard` annotation."""
    url = f"{GRAFANA_URL}/d/pgmon-postgresql-9628/?var-server={quote_plus(server)}"
    return url + (f"&var-instance={quote_plus(database)}" if database else "")


def assert_linked(received: list, alert: str, server: str, database: str | None = None) -> None:
    """The Discord and Telegram messages (both_channels' order) end with the links to the alert's dashboard and
    to its runbook."""
    discord, telegram = received
    url, runbook = dashboard_link(server, database), f"{DEFAULT_RUNBOOK_BASE_URL}#{alert.lower()}"
    assert discord.text.endswith(f"[Open the dashboard]({url}) · [Runbook]({runbook})"), (
        discord.text
    )
    assert telegram.text.endswith(
        f'<a href="{url.replace("&", "&amp;")}">Open the dashboard</a> · <a href="{runbook}">Runbook</a>'
    ), telegram.text


def streaming(lab) -> bool:
    return (
        lab.psql(
            STANDBY.port,
            "postgres",
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        ).strip()
        == "1"
    )


def slot_active(lab) -> str:
    return lab.psql(
        PRIMARY.port,
        "postgres",
        f"SELECT active FROM pg_replication_slots WHERE slot_name = '{REPLICA.slot}'",
    ).strip()


@pytest.fixture(scope="module")
def incidents(lab, new_deployment):
    lab.create_replica()  # fresh clusters: nothing of a previous run is left in them
    try:
        with new_deployment(
            "replica-project", databases=(PRIMARY, STANDBY), site=SITE
        ) as deployment:
            lab.psql(PRIMARY.port, "payments", f"CREATE TABLE {WRITES} (v int)")
            deploy_with_short_thresholds(
                deployment,
                [PRIMARY.name, STANDBY.name],
                DATABASE_THRESHOLDS,
                pgmon_grafana_url=GRAFANA_URL,
            )
            yield deployment
    finally:
        lab.remove_replica()


@pytest.fixture
def fresh(incidents):
    """Capture servers emptied before a test, and its sessions ended after it whatever happened."""
    incidents.discord.clear()
    incidents.telegram.clear()
    yield incidents
    end_sessions(incidents.lab, (PRIMARY.port, STANDBY.port))


def test_a_healthy_primary_and_replica_raise_nothing(fresh):
    """The replication rules (lag, streaming, slots, role) with their short thresholds say nothing of a replica
    that streams and replays."""
    assert streaming(fresh.lab) and slot_active(fresh.lab) == "t"
    assert_no_alert_while_healthy(2, port=SITE.prometheus_port, seconds=10)


def test_replication_lag_while_replay_is_paused(fresh):
    lab = fresh.lab
    replayed = "SELECT pg_last_wal_replay_lsn() >= '{}'::pg_lsn"
    lab.psql(
        PRIMARY.port, "payments", f"INSERT INTO {WRITES} VALUES (0)"
    )  # a transaction for the lag to count from
    lsn = lab.psql(PRIMARY.port, "payments", "SELECT pg_current_wal_lsn()").strip()
    wait_until(
        "the replica replayed it",
        lambda: lab.psql(STANDBY.port, "postgres", replayed.format(lsn)).strip() == "t",
        30,
    )
    lab.psql(STANDBY.port, "postgres", "SELECT pg_wal_replay_pause()")
    try:
        with Repeating(lab, PRIMARY.port, f"INSERT INTO {WRITES} VALUES (1)"):
            received = both_channels(fresh, "ReplicationLag", STANDBY_SERVER)
        for message in received:
            assert f"Replica {STANDBY_SERVER} is " in message.text and " behind" in message.text
            # The evidence in bytes beside the time, for people: the WAL that streamed in while replay waited.
            assert re.search(r": [0-9.]+ ?(?:[KMGT]i)?B received and not replayed", message.text), (
                message.text
            )
        # A server's alert: the dashboard on that server.
        assert_linked(received, "ReplicationLag", STANDBY_SERVER)
    finally:
        lab.psql(STANDBY.port, "postgres", "SELECT pg_wal_replay_resume()")
    both_channels(fresh, "ReplicationLag", STANDBY_SERVER, status="RESOLVED")


def test_a_replica_cut_from_its_primary(fresh):
    """primary_conninfo pointed at a closed port: the replica stops streaming, and its slot on the primary goes
    inactive; given back, both resolve."""
    lab = fresh.lab
    conninfo = lab.psql(STANDBY.port, "postgres", "SHOW primary_conninfo").strip()
    lab.psql(
        STANDBY.port,
        "postgres",
        "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=postgres'",
    )
    lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    try:
        wait_until("the replica cut off", lambda: not streaming(lab), 30)
        for message in both_channels(fresh, "ReplicaNotStreaming", STANDBY_SERVER):
            assert "has had no WAL receiver streaming" in message.text
        for message in both_channels(fresh, "ReplicationSlotInactive", PRIMARY_SERVER):
            assert f"Replication slot {REPLICA.slot} on {PRIMARY_SERVER} is inactive" in plain(
                message
            )
    finally:
        lab.psql(
            STANDBY.port,
            "postgres",
            "ALTER SYSTEM SET primary_conninfo = :'conninfo'",
            variables={"conninfo": conninfo},
        )
        lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    wait_until("the replica streaming again", lambda: streaming(lab), 60)
    both_channels(fresh, "ReplicaNotStreaming", STANDBY_SERVER, status="RESOLVED")
    both_channels(fresh, "ReplicationSlotInactive", PRIMARY_SERVER, status="RESOLVED")


def test_a_promoted_replica_changes_role_and_leaves_its_slot_holding_wal(fresh):
    """A failover: pg_promote() on the replica. It raises PostgresRoleChanged; the old primary keeps the slot
    nobody consumes now, inactive, and it holds every WAL segment written since (ReplicationSlotWalRetained)."""
    lab = fresh.lab
    lab.psql(STANDBY.port, "postgres", "SELECT pg_promote()")
    assert lab.psql(STANDBY.port, "postgres", "SELECT pg_is_in_recovery()").strip() == "f"
    for message in both_channels(fresh, "PostgresRoleChanged", STANDBY_SERVER):
        assert f"PostgreSQL on {STANDBY_SERVER} changed role: now a primary" in message.text
    both_channels(fresh, "ReplicationSlotInactive", PRIMARY_SERVER)
    for _ in range(2):  # two segments' worth: over 16 MiB held, above 0.01 GiB
        lab.psql(
            PRIMARY.port, "payments", f"INSERT INTO {WRITES} VALUES (2); SELECT pg_switch_wal()"
        )
    for message in both_channels(fresh, "ReplicationSlotWalRetained", PRIMARY_SERVER):
        assert f"Replication slot {REPLICA.slot} on {PRIMARY_SERVER} holds " in plain(message)
    both_channels(
        fresh, "PostgresRoleChanged", STANDBY_SERVER, status="RESOLVED"
    )  # after role_change_window
    lab.psql(PRIMARY.port, "postgres", f"SELECT pg_drop_replication_slot('{REPLICA.slot}')")
    both_channels(fresh, "ReplicationSlotInactive", PRIMARY_SERVER, status="RESOLVED")
    both_channels(fresh, "ReplicationSlotWalRetained", PRIMARY_SERVER, status="RESOLVED")


def test_wal_archiving_failing(fresh):
    """The promoted server archives (archive_mode = on since the replica was made): an archive_command that fails
    while WAL keeps coming, then one that works."""
    lab = fresh.lab
    switch = f"INSERT INTO {WRITES} VALUES (3); SELECT pg_switch_wal()"
    lab.psql(STANDBY.port, "postgres", "ALTER SYSTEM SET archive_command = 'false'")
    lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    try:
        with Repeating(
            lab, STANDBY.port, switch, every=2
        ):  # each new segment wakes the archiver to fail again
            received = both_channels(fresh, "WalArchivingFailing", STANDBY_SERVER)
        for message in received:
            assert "archive_command failed" in plain(message) and STANDBY_SERVER in message.text
        assert "[FIRING:1 · CRITICAL] WalArchivingFailing" in received[1].text
    finally:
        lab.psql(STANDBY.port, "postgres", "ALTER SYSTEM SET archive_command = 'true'")
        lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    lab.psql(STANDBY.port, "payments", switch)
    both_channels(fresh, "WalArchivingFailing", STANDBY_SERVER, status="RESOLVED")


def test_a_setting_waiting_for_a_restart(fresh):
    lab = fresh.lab
    lab.psql(STANDBY.port, "postgres", "ALTER SYSTEM SET shared_buffers = '200MB'")
    lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    try:
        for message in both_channels(fresh, "SettingsPendingRestart", STANDBY_SERVER):
            assert f"Setting shared_buffers on {STANDBY_SERVER} waits for a restart" in plain(
                message
            )
    finally:
        lab.psql(STANDBY.port, "postgres", "ALTER SYSTEM RESET shared_buffers")
        lab.psql(STANDBY.port, "postgres", "SELECT pg_reload_conf()")
    both_channels(fresh, "SettingsPendingRestart", STANDBY_SERVER, status="RESOLVED")


def test_a_silenced_database_sends_nothing_while_another_alerts_until_the_silence_ends(fresh):
    """A sequence near its end in both databases; standby silenced: only payments' incident arrives. The silence is
    listed; ended early, standby's arrives too. Both carry the link to their own server and database."""
    lab = fresh.lab
    output = silence_command(
        fresh, {"database": "standby", "for": "10m", "reason": "e2e: maintenance of standby"}
    )
    silence_id = re.search(
        r'pgmon: silence ([0-9a-f-]{36}) added: database="standby" for 10m: e2e: maintenance '
        "of standby",
        output,
    ).group(1)
    assert re.search(
        rf'pgmon: silence {silence_id}  database="standby"  until .* UTC \((9m|10m) left\)  by \S+@\S+: '
        "e2e: maintenance of standby",
        output,
    ), output[-3000:]
    sequence = (
        "DROP SEQUENCE IF EXISTS pgmon_e2e_seq; CREATE SEQUENCE pgmon_e2e_seq AS integer; "
        "SELECT setval('pgmon_e2e_seq', 2000000000); GRANT SELECT ON pgmon_e2e_seq TO pgmon_payments"
    )
    for port in (PRIMARY.port, STANDBY.port):
        lab.psql(port, "payments", sequence)
    try:
        received = both_channels(fresh, "SequenceNearExhaustion", "payments")
        for message in received:
            assert (
                f"Sequence public.pgmon_e2e_seq of payments on {PRIMARY_SERVER} has used 93% of its range"
                in plain(message)
            )
        assert_linked(received, "SequenceNearExhaustion", PRIMARY_SERVER, "payments")
        # Standby's alert reached Alertmanager, which holds it back for the silence, and sends nothing about it.
        wait_until(
            "standby's alert held back",
            lambda: held_back_by(silence_id, "SequenceNearExhaustion", SITE.alertmanager_port),
            30,
        )
        assert_nothing_sent_about(
            fresh, "standby", 12
        )  # group_wait, then two group_intervals of 5s
        assert silence_id in silence_command(fresh)  # listed
        output = silence_command(fresh, {"end": silence_id})
        assert (
            f"pgmon: silence {silence_id} ended" in output and "pgmon: no active silence" in output
        )
        received = both_channels(fresh, "SequenceNearExhaustion", "standby")
        assert_linked(received, "SequenceNearExhaustion", STANDBY_SERVER, "standby")
    finally:
        for port in (PRIMARY.port, STANDBY.port):
            lab.psql(port, "payments", "ALTER SEQUENCE pgmon_e2e_seq AS bigint")
    both_channels(fresh, "SequenceNearExhaustion", "payments", status="RESOLVED")
    both_channels(fresh, "SequenceNearExhaustion", "standby", status="RESOLVED")


def test_dead_rows_with_autovacuum_off_and_a_table_never_analyzed(fresh):
    lab = fresh.lab
    lab.psql(
        STANDBY.port,
        "payments",
        "DROP TABLE IF EXISTS pgmon_e2e_dead; "
        "CREATE TABLE pgmon_e2e_dead (id int, pad text) WITH (autovacuum_enabled = off); "
        "INSERT INTO pgmon_e2e_dead SELECT g, 'x' FROM generate_series(1, 100000) g; "
        "DELETE FROM pgmon_e2e_dead WHERE id % 2 = 0",
    )
    try:
        received = both_channels(fresh, "DeadTuplesNotVacuumed", "standby")
        for message in received:
            assert "50% dead rows in table public.pgmon_e2e_dead of standby" in plain(message)
        assert_linked(received, "DeadTuplesNotVacuumed", STANDBY_SERVER, "standby")
        for message in both_channels(fresh, "TableNotAnalyzed", "standby"):
            assert "Table public.pgmon_e2e_dead of standby" in plain(message)
        lab.psql(STANDBY.port, "payments", "VACUUM pgmon_e2e_dead")
        both_channels(fresh, "DeadTuplesNotVacuumed", "standby", status="RESOLVED")
        assert not [
            m
            for m in fresh.telegram.received
            if "TableNotAnalyzed" in m.text and "[RESOLVED" in m.text
        ]
        lab.psql(STANDBY.port, "payments", "ANALYZE pgmon_e2e_dead")
        both_channels(fresh, "TableNotAnalyzed", "standby", status="RESOLVED")
    finally:
        lab.psql(STANDBY.port, "payments", "DROP TABLE IF EXISTS pgmon_e2e_dead")


def test_temporary_files_spilled(fresh):
    fresh.lab.psql(
        STANDBY.port,
        "payments",
        "SET work_mem = '64kB'; "
        "SELECT count(*) FROM (SELECT g FROM generate_series(1, 1000000) g ORDER BY random()) s",
    )
    received = both_channels(fresh, "TempFilesSpilled", "standby")
    for message in received:
        assert "written to temporary files in standby on " + STANDBY_SERVER in message.text
    assert_linked(received, "TempFilesSpilled", STANDBY_SERVER, "standby")
    both_channels(
        fresh, "TempFilesSpilled", "standby", status="RESOLVED"
    )  # once the window has passed


def test_a_role_at_its_connection_limit(fresh):
    lab = fresh.lab
    lab.psql(
        STANDBY.port,
        "postgres",
        f"DROP ROLE IF EXISTS {APP_ROLE}; "
        f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}' CONNECTION LIMIT 2",
    )
    as_app = ("-h", "127.0.0.1", "-U", APP_ROLE)
    sessions = [
        Session(STANDBY.port, "payments", *as_app, environment={"PGPASSWORD": APP_PASSWORD})
        for _ in range(2)
    ]
    try:
        count = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_ROLE}'"
        wait_until(
            "both sessions in", lambda: lab.psql(STANDBY.port, "postgres", count).strip() == "2", 30
        )
        for message in both_channels(fresh, "RoleConnectionsNearLimit", STANDBY_SERVER):
            assert (
                f"100% of role {APP_ROLE}'s connection limit in use on {STANDBY_SERVER}"
                in plain(message)
            )
            assert "(rolconnlimit 2)" in message.text
    finally:
        for session in sessions:
            session.close()
    both_channels(fresh, "RoleConnectionsNearLimit", STANDBY_SERVER, status="RESOLVED")
    lab.psql(STANDBY.port, "postgres", f"DROP ROLE {APP_ROLE}")


def test_a_high_share_of_rollbacks(fresh):
    """pgbench running transactions that all roll back."""
    script = fresh.lab.dir / "rollback.sql"
    script.write_text("BEGIN;\nSELECT 1;\nROLLBACK;\n")
    script.chmod(0o644)
    bench = subprocess.Popen(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "pgbench",
            "-n",
            "-f",
            str(script),
            "-T",
            "90",
            "-R",
            "200",
            "-p",
            str(STANDBY.port),
            "payments",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for message in both_channels(fresh, "HighRollbackRate", "standby"):
            assert "of transactions roll back in standby on " + STANDBY_SERVER in message.text
    finally:
        bench.terminate()
        bench.wait(timeout=30)
    both_channels(fresh, "HighRollbackRate", "standby", status="RESOLVED")
    script.unlink()


def test_checkpoints_requested_rather_than_timed(fresh):
    for _ in range(2):
        fresh.lab.psql(STANDBY.port, "postgres", "CHECKPOINT")
    for message in both_channels(fresh, "CheckpointsRequested", STANDBY_SERVER):
        assert f"100% of checkpoints on {STANDBY_SERVER} are requested, not timed" in message.text
    both_channels(
        fresh, "CheckpointsRequested", STANDBY_SERVER, status="RESOLVED"
    )  # once the window has passed


def test_a_database_growing_fast_and_heading_past_its_size_limit(fresh):
    """About 25 MiB loaded at once: more than 0.01 GiB in the window, and at that pace past 0.05 GiB within the
    horizon. Both resolve once the window holds no growth (the database stays under its limit)."""
    lab = fresh.lab
    lab.psql(
        STANDBY.port,
        "payments",
        "CREATE TABLE pgmon_e2e_bulk AS "
        "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g",
    )
    try:
        for message in both_channels(fresh, "DatabaseGrowingFast", "standby"):
            assert f"Database standby on {STANDBY_SERVER} grew " in message.text
        for message in both_channels(fresh, "DatabaseSizeLimitAhead", "standby"):
            assert (
                f"Database standby on {STANDBY_SERVER} heads past 0.05 GiB within 2m"
                in message.text
            )
        both_channels(fresh, "DatabaseGrowingFast", "standby", status="RESOLVED")
        both_channels(fresh, "DatabaseSizeLimitAhead", "standby", status="RESOLVED")
    finally:
        lab.psql(STANDBY.port, "payments", "DROP TABLE IF EXISTS pgmon_e2e_bulk")
