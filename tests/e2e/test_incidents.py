"""Incidents caused for real on the lab's PostgreSQL, and the messages that reach Discord and Telegram.

One deployment (shop and billing on 5432, ledger alone on 5433) with thresholds shortened through
group_data, so that each incident alerts within seconds, and warnings routed to Telegram too so
that both capture servers see every alert. For each incident: cause it, wait for the FIRING message
naming the alert and the database at both capture servers, end it, wait for the RESOLVED one.
The tests share the deployment and run in file order.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from tasks.settings import DEFAULT_RUNBOOK_BASE_URL, duration_seconds

from .lab import (
    ALERTMANAGER_PORT,
    EVALUATION_SECONDS,
    FLEET_DASHBOARD,
    GROUP_WAIT,
    POSTGRES_DOWN_FOR,
    PROMETHEUS_PORT,
    SCRAPE_SECONDS,
    api_auth,
    prometheus_query,
    psql_command,
    wait_until,
)

pytestmark = pytest.mark.e2e

NAMES = ["shop", "billing", "ledger"]
CHATS = ("-100987654321", "-100123456789")
APP = "pgmon-e2e-incident"  # application_name of every session these tests open
THRESHOLDS = {
    "exporter_errors_for": "10s",
    "lock_waiters_for": "4s",
    "deadlocks_window": "20s",
    "slow_query_mean_seconds": 1,
    "slow_query_window": "20s",
    "slow_query_for": "0s",
    "restart_window": "2m",
    "forecast_for": "0s",
}
# Per database: ledger's is its server's (5433 has only ledger); billing's leaves shop at the default.
DATABASE_THRESHOLDS = {
    "ledger": {"connections_percent": 20, "connections_for": "4s"},
    "billing": {"idle_in_transaction_seconds": 5, "idle_in_transaction_for": "2s"},
}
WAIT = 90  # seconds for a message; the configured intervals make it a few


class Session:
    """An interactive psql (as postgres) fed statements one at a time; it runs each as it arrives."""

    def __init__(
        self, port: int, dbname: str, *options: str, environment: dict[str, str] | None = None
    ):
        """``options`` and ``environment`` for psql, e.g. another role over TCP: ``"-h", "127.0.0.1", "-U", "app"``
        with ``{"PGPASSWORD": ...}``."""
        self.process = subprocess.Popen(
            psql_command(
                port, dbname, "-q", *options, environment={"PGAPPNAME": APP, **(environment or {})}
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self, sql: str) -> None:
        self.process.stdin.write(sql + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def sessions_where(lab, port: int, condition: str) -> int:
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}' AND {condition}"
    return int(lab.psql(port, "postgres", sql).strip())


def end_sessions(lab, ports=(5432, 5433)) -> None:
    for port in ports:
        lab.psql(
            port,
            "postgres",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{APP}'",
        )


def message(
    channel,
    alert: str,
    database: str,
    status: str = "FIRING",
    timeout: float = WAIT,
    chat: str | None = None,
):
    """The first message at ``channel`` (Telegram: to ``chat``, if given) whose text names ``alert``,
    ``database`` and ``status``."""
    return channel.wait_for(
        lambda m: (
            (chat is None or str(m.body["chat_id"]) == chat)
            and alert in m.text
            and database in m.text
            and f"[{status}" in m.text
        ),
        timeout=timeout,
    )


def plain(message) -> str:
    """A message's text without Discord's markdown escapes (``pgmon\\_lab`` is ``pgmon_lab`` on the screen)."""
    return re.sub(r"\\([\\*_~|`>#\[\]])", r"\1", message.text)


def both_channels(deployment, alert: str, database: str, status: str = "FIRING") -> list:
    """The message at Discord and at Telegram's first chat, once it has reached every chat: a copy
    still on its way to the second chat would land in the next test's emptied capture server."""
    discord = message(deployment.discord, alert, database, status)
    telegram = [message(deployment.telegram, alert, database, status, chat=chat) for chat in CHATS]
    return [discord, telegram[0]]


TABLE = (
    "DROP TABLE IF EXISTS pgmon_e2e; CREATE TABLE pgmon_e2e (id int PRIMARY KEY, v int); "
    "INSERT INTO pgmon_e2e VALUES (1, 0), (2, 0)"
)  # rows for sessions to lock


def deploy_with_short_thresholds(
    deployment,
    names: list[str],
    database_thresholds: dict[str, dict],
    pg_stat_statements: tuple[str, ...] = (),
    **settings,
) -> str:
    """Deploys ``names`` with THRESHOLDS, the databases' own, and warnings sent to Telegram's two chats as
    well, plus any other ``settings`` (``pgmon_grafana_url=...``); returns pyinfra's output."""
    data = deployment.group_data(names)
    databases = [
        {
            **db,
            "alert_thresholds": database_thresholds.get(db["name"], {}),
            "pg_stat_statements": db["name"] in pg_stat_statements,
        }
        for db in data["pgmon_databases"]
    ]
    deployment.secrets["PGMON_E2E_TELEGRAM_CHAT"] = ",".join(CHATS)
    deployment.configure(
        names,
        pgmon_databases=databases,
        pgmon_alert_thresholds=THRESHOLDS,
        pgmon_telegram={**data["pgmon_telegram"], "severities": ["critical", "warning"]},
        **settings,
    )
    result = deployment.run()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.fixture(scope="module")
def incidents(deployment, lab):
    """The deployment, up with short thresholds; pg_stat_statements in shop, read for all of 5432."""
    lab.psql(5432, "shop", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    for dbname in ("shop", "billing"):
        lab.psql(5432, dbname, TABLE)
    output = deploy_with_short_thresholds(
        deployment, NAMES, DATABASE_THRESHOLDS, pg_stat_statements=("shop",)
    )
    assert "rule silent on host.docker.internal:5433:" in output, output[-6000:]
    yield deployment
    end_sessions(lab)
    for dbname in ("shop", "billing"):
        lab.psql(5432, dbname, "DROP TABLE IF EXISTS pgmon_e2e")
    lab.psql(5432, "shop", "DROP EXTENSION IF EXISTS pg_stat_statements")


@pytest.fixture
def fresh(incidents):
    """Capture servers emptied before a test, and its sessions ended after it whatever happened."""
    incidents.discord.clear()
    incidents.telegram.clear()
    yield incidents
    end_sessions(incidents.lab)


def silence_command(deployment, silence: dict | None = None) -> str:
    """``pyinfra inventory.py silence.py [--data pgmon_silence=<silence as JSON>]`` from the project folder, as
    the people on call run it; its output."""
    args = ("--data", f"pgmon_silence={json.dumps(silence)}") if silence else ()
    result = deployment.project.pyinfra(*args, deploy="silence.py", timeout=120)
    output = result.stdout + result.stderr
    deployment.outputs.append(output)
    assert result.returncode == 0, output[-4000:]
    return output


def alerts_matching(matcher: str, port: int = ALERTMANAGER_PORT) -> list[dict]:
    """The alerts the Alertmanager published on ``port`` holds that match ``matcher`` (its API)."""
    response = requests.get(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        params={"filter": matcher},
        auth=api_auth(port),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def post_alerts(alerts: list[dict], port: int = ALERTMANAGER_PORT) -> None:
    """Alerts sent to the API of the Alertmanager published on ``port``, as Prometheus sends them."""
    requests.post(
        f"http://127.0.0.1:{port}/api/v2/alerts", json=alerts, auth=api_auth(port), timeout=10
    ).raise_for_status()


def held_back_by(silence_id: str, alertname: str, port: int = ALERTMANAGER_PORT) -> bool:
    """Whether Alertmanager holds an alert ``alertname`` back for the silence ``silence_id`` (its API)."""
    return any(
        a["status"]["state"] == "suppressed" and a["status"]["silencedBy"] == [silence_id]
        for a in alerts_matching(f'alertname="{alertname}"', port)
    )


def assert_nothing_sent_about(deployment, text: str, seconds: float) -> None:
    """No message holding ``text`` at either capture server, watched for ``seconds``: the flushes Alertmanager
    would have made in that time (group_wait, then group_interval) sent nothing about it."""
    observed_until = time.monotonic() + seconds
    while time.monotonic() < observed_until:
        sent = [
            m.text[:160]
            for m in deployment.discord.received + deployment.telegram.received
            if text in m.text
        ]
        assert sent == [], sent
        time.sleep(0.5)


def assert_no_alert_while_healthy(
    exporters: int, port: int = PROMETHEUS_PORT, seconds: float | None = None
) -> None:
    """No false alarm, not even pending: the rules over the lab's normal state, longer than the shortest `for`
    (``seconds``; by default three times THRESHOLDS' exporter_errors_for).

    Host rules are left out: this machine's CPU belongs to whatever else runs on it.
    """
    wait_until(
        "every exporter scraped",
        lambda: len(prometheus_query("pg_up == 1", port=port)) == exporters,
        60,
    )
    observed_until = time.monotonic() + (
        seconds or 3 * duration_seconds(THRESHOLDS["exporter_errors_for"])
    )
    while time.monotonic() < observed_until:
        alerts = {
            r["metric"]["alertname"]
            for r in prometheus_query('ALERTS{alertname!~"Watchdog|Host.*"}', port=port)
        }
        assert alerts == set(), alerts
        time.sleep(EVALUATION_SECONDS)


def postgres_down_then_back(deployment, port: int, database: str) -> None:
    """Stops the server on ``port`` (``database`` alone there): PostgresDown at both channels within the bound
    the configured intervals allow, every Telegram chat; then started again: RESOLVED, and PostgresRestarted."""
    lab, server = deployment.lab, f"host.docker.internal:{port}"
    bound = (
        SCRAPE_SECONDS
        + EVALUATION_SECONDS
        + duration_seconds(POSTGRES_DOWN_FOR)
        + duration_seconds(GROUP_WAIT)
    )
    stopped = time.monotonic()
    lab.stop_cluster(port)
    try:
        discord, telegram = both_channels(deployment, "PostgresDown", database)
        for channel, received in (("discord", discord), ("telegram", telegram)):
            print(
                f"\nPostgresDown ({server}) at {channel}: {received.at - stopped:.1f}s after the stop "
                f"(scrape {SCRAPE_SECONDS}s + evaluation {EVALUATION_SECONDS}s + for {POSTGRES_DOWN_FOR} "
                f"+ group_wait {GROUP_WAIT} = {bound:g}s)"
            )
        assert (
            f"<b>[FIRING:1 · CRITICAL] PostgresDown · {database} on {server}</b>" in telegram.text
        )
        assert server in discord.text
        # The runbook beside the dashboard link, in what each service really received.
        runbook = f"{DEFAULT_RUNBOOK_BASE_URL}#postgresdown"
        assert f'<a href="{runbook}">Runbook</a>' in telegram.text
        assert f"[Runbook]({runbook})" in discord.text
        chats = {
            str(m.body["chat_id"]) for m in deployment.telegram.received if "PostgresDown" in m.text
        }
        assert chats == set(CHATS)
    finally:
        lab.start_cluster(port)
    both_channels(deployment, "PostgresDown", database, status="RESOLVED")
    both_channels(deployment, "PostgresRestarted", server)


def test_healthy_databases_raise_nothing(fresh):
    assert_no_alert_while_healthy(len(NAMES))


def test_test_alert_command_reaches_every_channel_and_chat(fresh):
    result = fresh.project.pyinfra(deploy="send_test_alert.py")
    fresh.outputs.append(result.stdout + result.stderr)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "pgmon: test alert: discord   ok    1 message(s) accepted" in output
    assert "pgmon: test alert: telegram  ok    2 message(s) accepted" in output
    # One group, both severities. On a loaded CI host the two amtool runs can straddle the lab's 2 s group_wait:
    # the group is then sent with one alert first and both at its next group_interval.
    fresh.discord.wait_for(
        lambda m: "PgmonTestAlert" in m.text and "(critical)" in m.text and "(warning)" in m.text,
        timeout=WAIT,
    )
    telegram = [m for m in fresh.telegram.received if "PgmonTestAlert" in m.text]
    assert sorted({str(m.body["chat_id"]) for m in telegram}) == sorted(CHATS)
    # Resolved by itself a minute on, as the command says.
    both_channels(fresh, "PgmonTestAlert", "the processing host", status="RESOLVED")


def test_the_fire_drill_sends_one_message_per_channel_and_chat_then_resolves(fresh):
    result = fresh.project.pyinfra(deploy="drill.py")
    output = result.stdout + result.stderr
    fresh.outputs.append(output)
    assert result.returncode == 0, output[-6000:]
    count = int(re.search(r"pgmon: drill: (\d+) drill alerts", output)[1])
    assert count >= 36, output[-4000:]  # every rule, each severity it has
    # Each channel and chat named, with its delivery time.
    for destination in ["discord", *(f"telegram chat {n}" for n in range(1, len(CHATS) + 1))]:
        assert re.search(
            rf"pgmon: drill: {destination} +ok    1 message\(s\) accepted in \d+s", output
        ), output[-4000:]

    def drill(status: str, chat: str | None = None):
        return lambda m: (
            f"[DRILL · {status}" in m.text and (chat is None or str(m.body["chat_id"]) == chat)
        )

    firing = fresh.discord.wait_for(drill("FIRING"), timeout=5)
    assert f"pgmon fire drill: {count} alerts, no incident" in firing.text
    assert firing.text.count("\n• ") == count
    assert "• PostgresDown (critical)" in firing.text and "• LockContention (" in firing.text
    for chat in CHATS:
        fresh.telegram.wait_for(drill("FIRING", chat), timeout=5)
        fresh.telegram.wait_for(drill("RESOLVED", chat), timeout=WAIT)
    fresh.discord.wait_for(drill("RESOLVED"), timeout=WAIT)
    # One message per channel and chat, not one per rule.
    assert len([m for m in fresh.discord.received if drill("FIRING")(m)]) == 1
    telegram = [str(m.body["chat_id"]) for m in fresh.telegram.received if drill("FIRING")(m)]
    assert sorted(telegram) == sorted(CHATS)


def test_the_drill_judges_its_own_messages_not_a_real_alert_sent_meanwhile(fresh):
    """Discord refuses the drill's message (rate limited) and takes a real alert's, sent while the drill
    waits: the drill reports Discord's refusal. (Counted per channel, not per receiver, the real message
    passed for the drill's.)"""
    fresh.discord.rate_limit(lambda m: "[DRILL ·" in m.text)
    real = {"labels": {"alertname": "PgmonRealDuringDrill", "severity": "critical"}}
    drill = fresh.project.start(deploy="drill.py")
    try:
        wait_until(
            "the drill's alerts in Alertmanager", lambda: alerts_matching('pgmon_drill="true"'), 60
        )
        post_alerts([real])
        message(fresh.discord, "PgmonRealDuringDrill", "the processing host")
        returncode, output = drill.finish()
    finally:
        fresh.discord.rate_limit(None)
    fresh.outputs.append(output)
    assert returncode != 0, output[-4000:]
    assert re.search(r"discord +FAIL  the service refused 1 request\(s\)", output), output[-4000:]
    for n in range(1, len(CHATS) + 1):
        assert re.search(rf"telegram chat {n} +ok    1 message\(s\) accepted", output), output[
            -4000:
        ]
    accepted = message(fresh.discord, "PgmonRealDuringDrill", "the processing host")
    refused = next(m for m in fresh.discord.rate_limited if "[DRILL · FIRING" in m.text)
    assert accepted.at < refused.at  # the real message came first, within the drill's wait
    post_alerts([{**real, "endsAt": datetime.now(UTC).isoformat()}])
    both_channels(fresh, "PgmonRealDuringDrill", "the processing host", status="RESOLVED")
    for chat in CHATS:  # the drill's all-clear, before the next test empties the capture servers
        fresh.telegram.wait_for(
            lambda m, chat=chat: "[DRILL · RESOLVED" in m.text and str(m.body["chat_id"]) == chat,
            timeout=WAIT,
        )


def test_a_slot_about_to_lose_its_wal_is_forecast_and_resolves_when_dropped(fresh):
    """A real forecast: an inactive slot on 5433 under max_slot_wal_keep_size, WAL written steadily; its
    safe_wal_size falls, and ReplicationSlotWalRunsOut names the slot and the time left long before it is lost."""
    lab, slot, server = fresh.lab, "pgmon_e2e_forecast", "host.docker.internal:5433"
    lab.psql(5433, "postgres", "ALTER SYSTEM SET max_slot_wal_keep_size = '512MB'")
    lab.psql(5433, "postgres", "SELECT pg_reload_conf()")
    lab.psql(5433, "postgres", f"SELECT pg_create_physical_replication_slot('{slot}', true)")
    writing = threading.Event()
    writing.set()

    def write_wal() -> None:
        while writing.is_set():
            lab.psql(
                5433,
                "ledger",
                "CREATE TABLE IF NOT EXISTS pgmon_e2e_wal (v int); "
                "INSERT INTO pgmon_e2e_wal SELECT generate_series(1, 1000); SELECT pg_switch_wal();",
            )
            time.sleep(
                3
            )  # about 5 MiB/s (a switch ends a 16 MiB segment): lost after some 100 s, not sooner

    writer = threading.Thread(target=write_wal, daemon=True)
    writer.start()
    try:
        for received in both_channels(fresh, "ReplicationSlotWalRunsOut", server):
            assert f"Replication slot {slot} on {server} loses WAL in" in plain(received)
            assert "B left" in received.text and "[FIRING:1 · CRITICAL]" in received.text
        # The fleet dashboard lists it under "Time left before a limit", from the rule's own record.
        fleet = json.loads(FLEET_DASHBOARD.read_text())
        (panel,) = [p for p in fleet["panels"] if p["title"] == "Time left before a limit"]
        rows = prometheus_query(panel["targets"][0]["expr"].replace("$server", ".*"))
        left = [
            float(row["value"][1])
            for row in rows
            if row["metric"].get("forecast") == "ReplicationSlotWalRunsOut"
            and row["metric"].get("slot_name") == slot
        ]
        assert len(left) == 1 and 0 <= left[0] < 3 * 86400, rows
    finally:
        writing.clear()
        writer.join(timeout=30)
        lab.psql(5433, "postgres", f"SELECT pg_drop_replication_slot('{slot}')")
        lab.psql(5433, "postgres", "ALTER SYSTEM RESET max_slot_wal_keep_size")
        lab.psql(5433, "postgres", "SELECT pg_reload_conf()")
        lab.psql(5433, "ledger", "DROP TABLE IF EXISTS pgmon_e2e_wal")
    both_channels(fresh, "ReplicationSlotWalRunsOut", server, status="RESOLVED")


def test_too_many_connections_on_a_server(fresh):
    lab = fresh.lab
    sessions = [
        Session(5433, "ledger") for _ in range(25)
    ]  # idle psql sessions hold their connections
    try:
        wait_until("25 sessions on 5433", lambda: sessions_where(lab, 5433, "true") >= 25, 30)
        for received in both_channels(fresh, "TooManyConnections", "ledger"):
            assert (
                "host.docker.internal:5433" in received.text
                and "Most connected: ledger" in received.text
            )
    finally:
        for session in sessions:
            session.close()
    both_channels(fresh, "TooManyConnections", "host.docker.internal:5433", status="RESOLVED")


def test_a_real_deadlock_between_two_sessions(fresh):
    lab = fresh.lab
    count = "SELECT deadlocks FROM pg_stat_database WHERE datname = 'billing'"
    before = int(lab.psql(5432, "billing", count))
    first, second = Session(5432, "billing"), Session(5432, "billing")
    try:
        first.run("BEGIN; UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        second.run("BEGIN; UPDATE pgmon_e2e SET v = v + 1 WHERE id = 2;")
        wait_until(
            "both hold a row",
            lambda: sessions_where(lab, 5432, "state = 'idle in transaction'") == 2,
            10,
        )
        first.run("UPDATE pgmon_e2e SET v = v + 1 WHERE id = 2;")
        wait_until(
            "the first waits",
            lambda: sessions_where(lab, 5432, "wait_event_type = 'Lock'") == 1,
            10,
        )
        second.run("UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        aborted = "state = 'idle in transaction (aborted)'"
        wait_until(
            "PostgreSQL to break the deadlock", lambda: sessions_where(lab, 5432, aborted) == 1, 15
        )
        first.run("ROLLBACK;")
        second.run("ROLLBACK;")
        # A session reports its statistics once out of its transaction.
        wait_until(
            "the deadlock counted", lambda: int(lab.psql(5432, "billing", count)) > before, 15
        )
    finally:
        first.close()
        second.close()
    for received in both_channels(fresh, "Deadlocks", "billing"):
        assert "host.docker.internal:5432" in received.text
    both_channels(fresh, "Deadlocks", "billing", status="RESOLVED")


def test_a_session_holding_a_lock_others_wait_on(fresh):
    lab = fresh.lab
    holder, waiter = Session(5432, "shop"), Session(5432, "shop")
    try:
        # A row lock. (An ACCESS EXCLUSIVE table lock would also stall the exporter's own table
        # queries in that database: ExporterDown, docs/alerts.md.)
        holder.run("BEGIN; UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        wait_until(
            "the row locked",
            lambda: sessions_where(lab, 5432, "state = 'idle in transaction'") == 1,
            10,
        )
        waiter.run("UPDATE pgmon_e2e SET v = v + 1 WHERE id = 1;")
        for received in both_channels(fresh, "LockContention", "shop"):
            assert "waiting on locks" in received.text
        holder.run("COMMIT;")
        wait_until(
            "the waiter served",
            lambda: sessions_where(lab, 5432, "wait_event_type = 'Lock'") == 0,
            10,
        )
    finally:
        holder.close()
        waiter.close()
    both_channels(fresh, "LockContention", "shop", status="RESOLVED")


def test_a_transaction_left_open(fresh):
    session = Session(5432, "billing")
    try:
        session.run("BEGIN; SELECT 1;")
        for received in both_channels(fresh, "IdleInTransaction", "billing"):
            assert "fix the missing COMMIT" in received.text  # the hint
        session.run("ROLLBACK;")
    finally:
        session.close()
    both_channels(fresh, "IdleInTransaction", "billing", status="RESOLVED")


def test_a_slow_query_seen_by_pg_stat_statements(fresh):
    for _ in range(3):  # the same statement, so its counters grow between scrapes
        fresh.lab.psql(5432, "billing", "SELECT pg_sleep(2)")
    for received in both_channels(fresh, "SlowQueries", "billing"):
        assert "per call" in received.text
    both_channels(fresh, "SlowQueries", "billing", status="RESOLVED")


def test_a_silenced_server_sends_nothing_while_another_server_still_alerts(fresh):
    """Maintenance of 5433: silence.py silences its server; 25 sessions there raise TooManyConnections, which
    Alertmanager holds back, while billing's transaction left open on 5432 still alerts. Ended early, the silence
    lets 5433's alert through."""
    lab, server = fresh.lab, "host.docker.internal:5433"
    output = silence_command(
        fresh, {"server": server, "for": "5m", "reason": "e2e: 5433 maintenance"}
    )
    silence_id = re.search(
        rf'pgmon: silence (\S+) added: server="{server}" for 5m: e2e: 5433 maintenance', output
    ).group(1)
    sessions = [Session(5433, "ledger") for _ in range(25)]
    billing = Session(5432, "billing")
    try:
        wait_until("25 sessions on 5433", lambda: sessions_where(lab, 5433, "true") >= 25, 30)
        billing.run("BEGIN; SELECT 1;")
        both_channels(
            fresh, "IdleInTransaction", "billing"
        )  # another server's incident still arrives
        wait_until(
            "5433's alert held back", lambda: held_back_by(silence_id, "TooManyConnections"), 30
        )
        assert_nothing_sent_about(fresh, "TooManyConnections", 8)
        output = silence_command(fresh, {"end": silence_id})
        assert (
            f"pgmon: silence {silence_id} ended" in output and "pgmon: no active silence" in output
        )
        both_channels(fresh, "TooManyConnections", server)
        billing.run("ROLLBACK;")
    finally:
        for session in [*sessions, billing]:
            session.close()
    both_channels(fresh, "TooManyConnections", server, status="RESOLVED")
    both_channels(fresh, "IdleInTransaction", "billing", status="RESOLVED")


def test_postgres_down_reaches_both_channels_within_the_bound_then_resolves(fresh):
    postgres_down_then_back(fresh, 5433, "ledger")
