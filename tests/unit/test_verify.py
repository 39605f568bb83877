from tasks.render.alertmanager import render_alertmanager_config
from tasks.settings import build_settings
from tasks.verify_databases import Finding, check_databases, privilege_warning, slow_query_coverage
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
    hints = {f.subject: f.hint for f in check_databases(settings, [], down)}
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
