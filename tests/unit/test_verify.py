import shlex
import shutil
import subprocess
from urllib.parse import unquote

import pytest

from tasks.render.alertmanager import render_alertmanager_config
from tasks.settings import build_settings
from tasks.verify_databases import (
    LIVE_SCRAPES_AT_ONCE,
    Finding,
    Readings,
    check_databases,
    exporter_readings,
    exporter_readings_command,
    parse_exporter_readings,
    privilege_warning,
    slow_query_coverage,
)
from tasks.verify_stack import (
    check_alertmanager,
    check_prometheus,
    config_hash_metric,
    plain_http_exposure,
    report,
)

from .conftest import ENVIRON, group_data


def test_slow_query_rule_coverage_names_the_silent_servers(settings):
    finding = slow_query_coverage(settings)
    assert finding.ok and "rule silent on db1:5432, db2:5433" in finding.detail
    dbs = group_data()["pgmon_databases"]
    covered = build_settings(
        group_data(pgmon_databases=[{**dbs[0], "pg_stat_statements": True}, dbs[2]]), ENVIRON
    )
    assert "rule silent on db2:5433:" in slow_query_coverage(covered).detail


def test_report_gives_one_line_per_subject_and_the_hint_for_failures():
    lines = report(
        [
            Finding("prometheus", True, "ready"),
            Finding("database shop", False, "pg_up 0", "check it"),
        ]
    )
    assert lines[0].split() == ["prometheus", "ok", "ready"]
    assert lines[1].split()[:3] == ["database", "shop", "FAIL"]
    assert lines[2].strip() == "check: check it"


def test_a_role_with_more_than_pg_monitor_is_named_in_a_warning(settings):
    shop = settings.databases[0]
    assert (
        privilege_warning(
            shop, {"pg_up": 1, "pgmon_role_superuser": 0, "pgmon_role_writable_tables": 0}
        )
        == ""
    )
    warning = privilege_warning(shop, {"pgmon_role_superuser": 1, "pgmon_role_writable_tables": 3})
    assert (
        "WARNING role 'mon$user' is a superuser, and may write 3 table(s) of \"shop's db: main\""
        in warning
    )


class AlertmanagerAnswering:
    """Alertmanager's /api/v2/status and /metrics as it answers them, running the configuration ``loaded``."""

    def __init__(self, loaded: bytes, reload_ok: int = 1):
        self.metrics = (
            f"alertmanager_config_hash {config_hash_metric(loaded)!r}\n"
            f"alertmanager_config_last_reload_successful {reload_ok}\n"
        ).encode()

    def get_json(self, address, port, path, auth=None):
        return 200, {"config": {"original": "..."}}

    def get(self, address, port, path, auth=None):
        return 200, self.metrics


def test_alertmanager_must_run_exactly_the_configuration_pgmon_wrote(settings):
    written = render_alertmanager_config(settings)
    assert check_alertmanager(settings, AlertmanagerAnswering(written))[0].ok
    for stale in (
        AlertmanagerAnswering(written + b"# an older file\n"),
        AlertmanagerAnswering(written, reload_ok=0),
    ):
        (finding,) = check_alertmanager(settings, stale)
        assert (
            not finding.ok and "is not running the configuration pgmon just wrote" in finding.detail
        )


class PrometheusAnswering:
    """Prometheus's APIs as they answer right after a refused self-scrape (the APIs' password just changed): its
    own prometheus_config_* series are stale, so a query for them is empty; the status API still knows."""

    def __init__(self, reload_ok: bool):
        self.answers = {
            "/api/v1/status/runtimeinfo": {
                "status": "success",
                "data": {"reloadConfigSuccess": reload_ok},
            },
            "/api/v1/rules": {"data": {"groups": [{"rules": [{"name": "PostgresDown"}]}]}},
            "/api/v1/alertmanagers": {"data": {"activeAlertmanagers": [{"url": "http://am"}]}},
        }

    def get(self, address, port, path, auth=None):
        return 200, b"Prometheus Server is Ready."

    def get_json(self, address, port, path, auth=None):
        if path.startswith("/api/v1/query"):
            return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
        return 200, self.answers[path]


def test_prometheus_reload_is_read_from_its_status_not_from_its_own_scrape(settings):
    assert check_prometheus(settings, PrometheusAnswering(reload_ok=True))[0].ok
    (finding,) = check_prometheus(settings, PrometheusAnswering(reload_ok=False))
    assert not finding.ok and finding.detail == "its last configuration reload failed"


def test_pg_up_0_hint_names_where_the_connection_comes_from():
    """A remote server sees the processing host's address; one on the host itself, Docker's network."""
    databases = group_data()["pgmon_databases"]
    databases[1] = {**databases[1], "host": "host.docker.internal"}
    settings = build_settings(group_data(pgmon_databases=databases), ENVIRON)
    down = {db.name: {"pg_up": 0.0} for db in settings.databases}
    hints = {f.subject: f.hint for f in check_databases(settings, [], Readings(down))}
    assert "from the processing host's own address" in hints["database shop"]
    assert "from pgmon's Docker network (172.16.0.0/12" in hints["database billing"]
    assert "Docker network" not in hints["database shop"]


def test_plain_http_grafana_on_a_network_address_is_warned_of(settings):
    assert plain_http_exposure(settings) == []  # HTTPS, the default
    for address in ("0.0.0.0", "10.1.2.3"):
        exposed = build_settings(
            group_data(pgmon_grafana_https=False, pgmon_grafana_bind_address=address), ENVIRON
        )
        (finding,) = plain_http_exposure(exposed)
        assert finding.ok and finding.detail.startswith(f"WARNING plain HTTP on {address}:3000")
        assert "pgmon_grafana_https" in finding.detail
    for address in ("127.0.0.1", "127.0.0.2"):
        local = build_settings(
            group_data(pgmon_grafana_https=False, pgmon_grafana_bind_address=address), ENVIRON
        )
        assert plain_http_exposure(local) == []


class PrometheusLastScrape:
    """Prometheus's answer to verification's range query: each series' samples within the last interval, as
    ``/api/v1/query`` gives a matrix; the queries asked are kept."""

    def __init__(self, scraped: dict[str, dict[str, float]]):
        self.scraped = scraped
        self.asked: list[str] = []

    def get_json(self, address, port, path, auth=None):
        self.asked.append(unquote(path))
        result = [
            {
                "metric": {"__name__": name, "database": db, "job": "postgres"},
                "values": [[1, str(v)]],
            }
            for db, reading in self.scraped.items()
            for name, v in reading.items()
        ]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}


HEALTHY = {"up": 1, "pg_up": 1, "pg_exporter_last_scrape_error": 0, "pgmon_role_superuser": 0}


def targets_up(settings) -> list[dict]:
    return [{"labels": {"database": db.name}, "health": "up"} for db in settings.databases]


def test_exporters_this_run_did_not_touch_pass_on_a_fresh_healthy_last_scrape(settings):
    """shop was scraped healthily within the interval and not touched: no live scrape for it; billing was
    touched, and ledger's exporter was not scraped within the interval (absent from the range): both asked
    now, and what they say now is the verdict."""
    prometheus = PrometheusLastScrape({"shop": HEALTHY, "billing": HEALTHY})
    commands = []

    def run_shell(command):
        commands.append(command)
        return ["billing pg_up 1", "ledger pg_up 0"]

    readings = exporter_readings(settings, prometheus, run_shell, live={"billing"})
    (query,) = prometheus.asked
    assert f"[{settings.config.scrape_interval_seconds}s]" in query
    assert commands == [exporter_readings_command(settings, ["billing", "ledger"])]
    assert readings.from_last_scrape == {"shop"}
    assert readings.by_database == {
        "shop": {"pg_up": 1, "pg_exporter_last_scrape_error": 0, "pgmon_role_superuser": 0},
        "billing": {"pg_up": 1},
        "ledger": {"pg_up": 0},
    }
    findings = {f.subject: f for f in check_databases(settings, targets_up(settings), readings)}
    assert findings["database shop"].ok
    assert "(Prometheus's last scrape)" in findings["database shop"].detail
    assert findings["database billing"].ok and "scrape" not in findings["database billing"].detail
    assert not findings["database ledger"].ok


def test_a_last_scrape_that_saw_anything_wrong_is_not_trusted(settings):
    """PostgreSQL down, a scrape error, the exporter not answering Prometheus: each asked again now."""
    prometheus = PrometheusLastScrape(
        {
            "shop": {**HEALTHY, "pg_exporter_last_scrape_error": 1},
            "billing": {**HEALTHY, "up": 0},
            "ledger": {**HEALTHY, "pg_up": 0},
        }
    )
    commands = []

    def run_shell(command):
        commands.append(command)
        return []

    readings = exporter_readings(settings, prometheus, run_shell, live=frozenset())
    assert readings.from_last_scrape == frozenset()
    assert commands == [exporter_readings_command(settings, ["shop", "billing", "ledger"])]


def test_without_a_list_of_touched_exporters_every_exporter_is_asked_now(settings):
    prometheus = PrometheusLastScrape({db.name: HEALTHY for db in settings.databases})
    readings = exporter_readings(settings, prometheus, lambda command: ["shop pg_up 1"], live=None)
    assert prometheus.asked == [] and readings.from_last_scrape == frozenset()


def test_nothing_touched_and_everything_fresh_runs_no_command_on_the_host(settings):
    prometheus = PrometheusLastScrape({db.name: HEALTHY for db in settings.databases})

    def run_shell(command):
        raise AssertionError("no exporter needed asking")

    readings = exporter_readings(settings, prometheus, run_shell, live=frozenset())
    assert readings.from_last_scrape == {db.name for db in settings.databases}


BUSYBOX = shutil.which("busybox")


needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox: tests/e2e/prepare_machine.sh")


def live_scrape(settings, tmp_path, exporters: list[str], names: list[str]) -> dict:
    """The host's command for ``names`` run for real in busybox's sh, the metrics network holding
    ``exporters`` (10.0.0.1...) and Prometheus. ``docker`` lists the network's members and runs the scrape in
    place of the Prometheus container, where busybox's timeout and wget are shell functions here: wget answers
    as an exporter, a tenth of a second after it notes, in ``log``, the address asked and its start and end."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "sed", "grep", "timeout", "sleep"):
        (bin_dir / applet).symlink_to(BUSYBOX)
    project = settings.config.project
    members = [f"/{project}-exporter-{name} 10.0.0.{i}/16" for i, name in enumerate(exporters, 1)]
    (tmp_path / "members").write_text(
        "\n".join([*members, f"/{project}-prometheus 10.0.0.99/16", ""])
    )
    exporter = (
        'timeout() { shift; "$@"; }; '
        f'wget() {{ echo "start $4" >> {tmp_path}/log; sleep 0.1; echo "end $4" >> {tmp_path}/log; '
        "echo 'pg_up{server=\"x\"} 1'; echo 'pg_exporter_last_scrape_error 0'; echo 'go_goroutines 9'; }; "
    )
    (bin_dir / "docker").write_text(
        f"#!{BUSYBOX} sh\n"
        f'if [ "$1" = network ]; then while read -r line; do echo "$line"; done < {tmp_path}/members; exit; fi\n'
        # docker exec -i <container> sh -c <script>
        f'exec sh -c {shlex.quote(exporter)}"$6"\n'
    )
    (bin_dir / "docker").chmod(0o755)
    result = subprocess.run(
        [BUSYBOX, "sh", "-c", exporter_readings_command(settings, names)],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result
    return parse_exporter_readings(result.stdout.splitlines())


def scrape_log(tmp_path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in (tmp_path / "log").read_text().splitlines()]


@needs_busybox
def test_the_live_scrape_asks_only_the_named_exporters(settings, tmp_path):
    names = [db.name for db in settings.databases]
    readings = live_scrape(settings, tmp_path, names, [names[0], names[2]])
    assert readings == {
        n: {"pg_up": 1.0, "pg_exporter_last_scrape_error": 0.0} for n in (names[0], names[2])
    }
    assert sorted(url for event, url in scrape_log(tmp_path) if event == "start") == [
        f"http://10.0.0.{i}:9187/metrics" for i in (1, 3)
    ]


@needs_busybox
def test_the_live_scrape_asks_a_round_of_exporters_at_a_time(settings, tmp_path):
    """Forty exporters asked, never more than LIVE_SCRAPES_AT_ONCE at the same moment, every one answered."""
    names = [f"tenant{i:02d}" for i in range(40)]
    readings = live_scrape(settings, tmp_path, names, names)
    assert set(readings) == set(names)
    running = most = 0
    for event, _ in scrape_log(tmp_path):
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert 1 < most <= LIVE_SCRAPES_AT_ONCE
