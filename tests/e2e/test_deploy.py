"""The deploy, end to end, over real SSH onto a real Docker engine, in the order a user lives it.

The tests in this module share one deployment and run in file order.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .lab import (
    BASE_DIR,
    EVALUATION_SECONDS,
    GRAFANA_PORT,
    GROUP_WAIT,
    POSTGRES_DOWN_FOR,
    PROMETHEUS_PORT,
    SCRAPE_SECONDS,
    TESTED_IMAGES,
    api_auth,
    prometheus_query,
    wait_until,
)

pytestmark = pytest.mark.e2e

FIRST = ["shop", "billing", "ledger"]
WITH_ANALYTICS = FIRST + ["analytics"]
SECRET_FILES = ("exporters/", "grafana/secrets/", "alertmanager/secrets/")


def assert_ok(result) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def changed_operations(output: str) -> list[str]:
    """Operation rows of pyinfra's results table that report a change (Success column)."""
    rows = output.split("--> Results:")[1].split("Grand total")[0].splitlines()[2:]
    return [row.strip().split("   ")[0] for row in rows if row.strip() and row.split()[-3] != "-"]


def verification_lines(output: str) -> dict[str, str]:
    lines = {}
    for line in output.splitlines():
        if "pgmon: database " in line:
            words = line.split("pgmon: database ", 1)[1].split()
            lines[words[0]] = " ".join(words[1:])
    return lines


def test_dry_run_on_a_fresh_host_changes_nothing(deployment):
    deployment.configure(FIRST)
    output = assert_ok(deployment.run("--dry", "--diff"))
    assert "pgmon: will create exporters/shop/pgpass" in output
    assert "pgmon: will start exporter-ledger" in output
    assert "exporters/shop/pgpass: content hidden (holds a secret)" in output
    assert not Path(BASE_DIR).exists()
    assert deployment.containers() == {}


def test_first_deploy_verifies_every_component(deployment):
    started = time.monotonic()
    output = assert_ok(deployment.run("-vvv", "--diff"))
    print(f"\nfirst deploy of {len(FIRST)} databases: {time.monotonic() - started:.1f}s")
    for component in ("prometheus", "alertmanager", "grafana"):
        assert (
            f"pgmon: {component}" in output
            and "ok" in output.split(f"pgmon: {component}")[1].split("\n")[0]
        )
    # No entry here says pg_stat_statements is installed, so verification must say the rule is silent everywhere.
    assert "rule silent on host.docker.internal:5432, host.docker.internal:5433:" in output
    assert {name: line.split()[0] for name, line in verification_lines(output).items()} == {
        "shop": "ok",
        "billing": "ok",
        "ledger": "ok",
    }
    services = set(deployment.containers())
    assert {"prometheus", "alertmanager", "grafana"} <= services
    assert {s for s in services if s.startswith("exporter-")} == {
        "exporter-shop",
        "exporter-billing",
        "exporter-ledger",
    }


def test_server_wide_series_are_counted_once_per_server(deployment):
    per_server = {
        r["metric"]["server"]: float(r["value"][1])
        for r in prometheus_query("count by (server) (pg_settings_max_connections)")
    }
    assert per_server == {"host.docker.internal:5432": 1.0, "host.docker.internal:5433": 1.0}
    stat_database = prometheus_query(
        'count by (server) (pg_stat_database_xact_commit{datname="shop"})'
    )
    assert [float(r["value"][1]) for r in stat_database] == [1.0]
    assert prometheus_query('{job="postgres", database=""}') == []
    assert prometheus_query('{job="postgres", server=""}') == []
    instances = {r["metric"]["instance"] for r in prometheus_query('pg_up{job="postgres"}')}
    assert instances == set(FIRST)


def test_secrets_are_not_readable_by_others_on_the_host(deployment):
    base = Path(BASE_DIR)
    checked = 0
    for path in base.rglob("*"):
        relative = str(path.relative_to(base))
        if path.is_file() and relative.startswith(SECRET_FILES):
            assert path.stat().st_mode & 0o007 == 0, relative
            checked += 1
    assert checked >= 7
    inspect = subprocess.run(
        ["docker", "inspect", *deployment.containers().values()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name, value in deployment.secrets.items():
        if "PASSWORD" in name or "TOKEN" in name:
            assert value not in inspect, name


def test_grafana_serves_the_imported_dashboard_with_the_datasource_bound(deployment):
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    response = requests.get(
        f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/uid/pgmon-postgresql-9628",
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 200
    dashboard = json.dumps(response.json()["dashboard"])
    assert "${DS_PROMETHEUS}" not in dashboard and "pgmon-prometheus" in dashboard
    assert (
        requests.get(
            f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/uid/pgmon-postgresql-9628",
            auth=("admin", "admin"),
            timeout=10,
        ).status_code
        == 401
    )


def test_rerun_reports_no_changes(deployment):
    before = deployment.host_fingerprint()
    started = time.monotonic()
    output = assert_ok(deployment.run())
    print(f"\nno-change rerun: {time.monotonic() - started:.1f}s")
    assert changed_operations(output) == []
    assert deployment.host_fingerprint() == before
    # No exporter touched: each passes on Prometheus's scrape of the last interval, unless that scrape was in
    # flight at the moment (then it is asked now); one at least was not asked.
    lines = verification_lines(output)
    assert all(line.startswith("ok") for line in lines.values()), lines
    assert any("(Prometheus's last scrape)" in line for line in lines.values()), lines


def test_more_exporters_than_a_server_has_connections_for_is_refused_before_any_change(deployment):
    """Prometheus on the host knows shop's server (max_connections 100): 120 more databases listed there
    beside shop and billing, an exporter each, would hold more connections than it has; refused naming the
    server, nothing changed.
    (The databases need not exist: nothing reaches them.)"""
    before = deployment.host_fingerprint()
    shop = deployment.group_data(["shop"])["pgmon_databases"][0]
    many = [{**shop, "name": f"many{i:03d}", "dbname": f"many{i:03d}"} for i in range(120)]
    databases = deployment.group_data(FIRST)["pgmon_databases"] + many
    deployment.configure(FIRST, pgmon_databases=databases)
    try:
        result = deployment.run()
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-4000:]
        server = f"{shop['host']}:{shop['port']}"
        assert (
            f"pgmon_databases: server {server}: pgmon's 122 exporter(s) there hold 122" in output
        ), output[-4000:]
        assert "nothing was changed" in output
        assert deployment.host_fingerprint() == before
    finally:
        deployment.configure(FIRST)


def test_an_image_that_cannot_be_pulled_fails_naming_its_setting_and_changes_nothing(deployment):
    before = deployment.host_fingerprint()
    # A registry on a closed loopback port: the pull fails on the host, and nothing leaves this machine.
    missing = "127.0.0.1:1/pgmon-e2e/alertmanager:v0.404"
    deployment.configure(FIRST, pgmon_images={**TESTED_IMAGES, "alertmanager": missing})
    try:
        result = deployment.run()
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-4000:]
        assert (
            f"pgmon_images.alertmanager: {missing} cannot be pulled, and nothing was changed"
            in output
        ), output[-4000:]
        assert deployment.host_fingerprint() == before  # no file written, no container stopped
    finally:
        deployment.configure(FIRST)
    assert changed_operations(assert_ok(deployment.run())) == []


def test_config_change_reloads_prometheus_without_recreating_anything(deployment):
    before = deployment.containers()
    reloads = prometheus_query("prometheus_config_last_reload_success_timestamp_seconds")[0][
        "value"
    ][1]
    deployment.configure(FIRST, pgmon_scrape_interval_seconds=SCRAPE_SECONDS + 1)
    try:
        assert_ok(deployment.run())
        config = requests.get(
            f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/status/config",
            auth=api_auth(PROMETHEUS_PORT),
            timeout=10,
        ).json()
        assert f"scrape_interval: {SCRAPE_SECONDS + 1}s" in config["data"]["yaml"]
        # Reloaded in place (SIGHUP), not restarted; the query sees it once Prometheus has scraped itself again.
        wait_until(
            "the reload to show in Prometheus's own metric",
            lambda: (
                float(
                    prometheus_query("prometheus_config_last_reload_success_timestamp_seconds")[0][
                        "value"
                    ][1]
                )
                > float(reloads)
            ),
            30,
        )
        assert deployment.containers() == before
    finally:
        deployment.configure(FIRST)
        assert_ok(deployment.run())


def test_dry_run_of_an_added_database_touches_nothing(deployment):
    before = deployment.host_fingerprint()
    deployment.configure(WITH_ANALYTICS)
    output = assert_ok(deployment.run("--dry", "--diff"))
    assert "pgmon: will start exporter-analytics" in output
    assert "pgmon: will create exporters/analytics/pgpass" in output
    diff_lines = [line.strip() for line in output.splitlines()]
    assert '+ "exporter-analytics:9187"' in [
        " ".join(line.split()) for line in diff_lines
    ]  # targets diff
    assert "will recreate" not in output and "will then" not in output
    assert deployment.host_fingerprint() == before


def test_adding_a_database_starts_only_its_exporter(deployment):
    before = deployment.containers()
    output = assert_ok(deployment.run())
    after = deployment.containers()
    assert set(after) - set(before) == {"exporter-analytics"}
    assert {name: after[name] for name in before} == before  # nothing else recreated
    analytics = verification_lines(output)["analytics"]
    assert analytics.startswith("ok") and "last scrape" not in analytics  # started: asked itself


def test_removing_a_database_keeps_the_others_and_the_history(deployment):
    before = deployment.containers()
    deployment.configure(FIRST)
    assert_ok(deployment.run())
    after = deployment.containers()
    assert set(before) - set(after) == {"exporter-analytics"}
    assert {name: before[name] for name in after} == after
    assert not Path(BASE_DIR, "exporters/analytics").exists()
    history = prometheus_query('count_over_time(pg_up{database="analytics"}[10m])')
    assert history and float(history[0]["value"][1]) > 0  # the TSDB kept its samples


def test_rotated_grafana_password_takes_effect_without_leaking(deployment):
    before = deployment.containers()
    deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"] = "n3w'gr@fana\"#%:" + str(time.time_ns())
    output = assert_ok(deployment.run("-vvv", "--diff"))
    assert (
        "pgmon: grafana" in output and "healthy, datasource answers" in output
    )  # verified with the new one
    assert deployment.containers() == before  # a reset, not a recreated container
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    assert (
        requests.get(
            f"http://127.0.0.1:{GRAFANA_PORT}/api/search", auth=auth, timeout=10
        ).status_code
        == 200
    )


def test_down_database_fails_verification_naming_it_and_alerts_both_channels(deployment, lab):
    deployment.discord.clear()
    deployment.telegram.clear()
    stopped = time.monotonic()
    lab.stop_cluster(5433)
    try:
        # Prometheus has seen it down: the re-run, which touches no exporter, must not pass on that scrape.
        wait_until(
            "Prometheus's last scrape of ledger saw PostgreSQL down",
            lambda: [r["value"][1] for r in prometheus_query('pg_up{database="ledger"}')] == ["0"],
            30,
        )
        result = deployment.run("--data", "pgmon_verify_timeout_seconds=15")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        lines = verification_lines(output)
        assert lines["ledger"].startswith("FAIL") and "pg_up 0" in lines["ledger"]
        assert lines["shop"].startswith("ok") and lines["billing"].startswith("ok")
        assert "pgmon verification failed for database ledger;" in output
        assert set(deployment.containers()) >= {"exporter-ledger", "prometheus"}  # nothing stopped

        def firing(message):
            return (
                "PostgresDown" in message.text
                and "ledger" in message.text
                and "FIRING" in message.text.upper()
            )

        bound = (
            SCRAPE_SECONDS + EVALUATION_SECONDS + _seconds(POSTGRES_DOWN_FOR) + _seconds(GROUP_WAIT)
        )
        for channel in (deployment.discord, deployment.telegram):
            message = channel.wait_for(firing, timeout=60)
            print(
                f"\nPostgresDown at {channel.kind}: {message.at - stopped:.1f}s after the stop "
                f"(bound from the configured intervals: {bound}s)"
            )
        telegram_text = deployment.telegram.wait_for(firing, 1).text
        assert "host.docker.internal:5433" in telegram_text and "<b>" in telegram_text
    finally:
        lab.start_cluster(5433)
    for channel in (deployment.discord, deployment.telegram):
        channel.wait_for(lambda m: "RESOLVED" in m.text.upper() and "ledger" in m.text, timeout=90)


def test_no_secret_in_any_pyinfra_output(deployment):
    assert len(deployment.outputs) >= 8
    for name, value in deployment.secrets.items():
        if name.endswith("_CHAT"):
            continue  # a chat id is an address, not a credential
        secret_part = value.rsplit("/", 1)[-1] if name.endswith("_URL") else value
        for output in deployment.outputs:
            assert secret_part not in output, f"{name} leaked into pyinfra output"


def _seconds(duration: str) -> int:
    return int(duration.rstrip("s"))
