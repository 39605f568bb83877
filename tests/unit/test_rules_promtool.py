"""The alert rules, proven by `promtool test rules` (tests/rules/*.yml) on the rules pgmon renders."""

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tasks.render.prometheus import render_recording_rules, render_rules
from tasks.settings import build_settings

from .conftest import ENVIRON, group_data, needs_promtool

RULE_TESTS = Path(__file__).resolve().parents[1] / "rules"
# Alerts that cannot have a silent case: Watchdog fires always, by design.
ALWAYS_FIRING = {"Watchdog"}


def rule_test_settings(**overrides):
    """The settings tests/rules/*.yml are written for: shop and billing on db1:5432, ledger on db2:5433;
    billing overrides four thresholds (the table ages: hours instead of days), ledger two of its server's (its data volume: 64 GiB);
    the databases of db3:5432 are discovered (pgmon_servers entry "tenants")."""
    databases = group_data()["pgmon_databases"]
    databases[1] = {
        **databases[1],
        "alert_thresholds": {
            "idle_in_transaction_seconds": 600,
            "postgres_down_for": "5m",
            "dead_tuples_vacuum_age_seconds": 3600,
            "analyze_age_seconds": 3600,
        },
    }
    databases[2] = {
        **databases[2],
        "alert_thresholds": {"connections_percent": 90, "data_volume_gib": 64},
    }
    servers = [{"name": "tenants", "host": "db3", "user": "mon", "password_env": "PW_LEDGER"}]
    return build_settings(
        group_data(pgmon_databases=databases, pgmon_servers=servers, **overrides), ENVIRON
    )


# postgres_exporter 0.20's names for the metrics 0.19 names pg_replication_slot_* (its CHANGELOG, "Metric name
# changes"). The collectors 0.20 made of its default metrics also lose their exported_server label.
RENAMED_IN_0_20 = {
    f"pg_replication_slot_{name}": f"pg_replication_slots_{name}"
    for name in (
        "slot_current_wal_lsn",
        "slot_confirmed_flush_lsn",
        "slot_is_active",
        "safe_wal_size_bytes",
        "wal_status",
    )
}


def as_exporter_0_20(test_text: str) -> str:
    """A rule test's text with the series as postgres_exporter 0.20 names and labels them."""
    for old, new in RENAMED_IN_0_20.items():
        test_text = re.sub(rf"\b{old}\b", new, test_text)
    return re.sub(r', exported_server="[^"]*"', "", test_text)


def run_rule_tests(
    settings, directory: Path, as_exporter: Callable[[str], str] = lambda text: text
) -> subprocess.CompletedProcess:
    """promtool on every tests/rules/*.yml, each file's text through ``as_exporter`` first."""
    (directory / "pgmon.rules.yml").write_bytes(render_rules(settings))
    (directory / "pgmon.recording.yml").write_bytes(render_recording_rules(settings))
    names = []
    for test_file in sorted(RULE_TESTS.glob("*.yml")):
        (directory / test_file.name).write_text(as_exporter(test_file.read_text()))
        names.append(test_file.name)
    return subprocess.run(
        ["promtool", "test", "rules", *names],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_promtool
def test_every_rule_test_passes(tmp_path):
    result = run_rule_tests(rule_test_settings(), tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr


@needs_promtool
def test_every_rule_test_passes_with_postgres_exporter_0_20_names(tmp_path):
    rewritten = [
        f.name for f in RULE_TESTS.glob("*.yml") if as_exporter_0_20(f.read_text()) != f.read_text()
    ]
    assert {"replication.yml", "forecasts.yml"} <= set(
        rewritten
    )  # the slot rules meet the new names
    result = run_rule_tests(rule_test_settings(), tmp_path, as_exporter_0_20)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr


def run_one_rule_test(settings, test_file: Path, directory: Path) -> subprocess.CompletedProcess:
    """promtool on ``test_file`` alone, against the alert rules rendered for ``settings``."""
    (directory / "pgmon.rules.yml").write_bytes(render_rules(settings))
    (directory / test_file.name).write_text(test_file.read_text())
    return subprocess.run(
        ["promtool", "test", "rules", test_file.name],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_promtool
def test_the_slot_rules_go_on_across_the_exporter_upgrade(tmp_path):
    test_file = RULE_TESTS / "upgrade" / "exporter_0_20.yml"
    result = run_one_rule_test(rule_test_settings(), test_file, tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr


@needs_promtool
def test_a_forecasts_horizon_moves_when_it_fires(tmp_path):
    test_file = RULE_TESTS / "horizon" / "forecast_7_days.yml"
    horizon = {"forecast_warning_days": 7, "forecast_critical_days": 1}
    result = run_one_rule_test(
        rule_test_settings(pgmon_alert_thresholds=horizon), test_file, tmp_path
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr
    # At the default 14 days, the same series make "shop" warn too.
    result = run_one_rule_test(rule_test_settings(), test_file, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and 'datname="shop"' in output, output[-8000:]


@needs_promtool
def test_rule_tests_notice_a_changed_threshold(tmp_path):
    result = run_rule_tests(
        rule_test_settings(pgmon_alert_thresholds={"connections_percent": 85}), tmp_path
    )
    assert result.returncode != 0
    assert "TooManyConnections" in result.stdout + result.stderr


def _cases() -> dict[str, set[str]]:
    """alertname -> {"fires", "silent"}: the kinds of cases tests/rules/ has for it."""
    kinds: dict[str, set[str]] = {}
    for test_file in RULE_TESTS.glob("*.yml"):
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kinds.setdefault(case["alertname"], set()).add(
                    "fires" if case.get("exp_alerts") else "silent"
                )
    return kinds


def test_every_alert_has_a_firing_and_a_silent_case():
    rules = yaml.safe_load(render_rules(rule_test_settings()))
    alerts = {
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    }
    cases = _cases()
    missing = {
        name: sorted(
            {"fires", "silent"}
            - cases.get(name, set())
            - ({"silent"} if name in ALWAYS_FIRING else set())
        )
        for name in alerts
    }
    assert {name: kinds for name, kinds in missing.items() if kinds} == {}
    assert set(cases) <= alerts, "tests/rules/ tests an alert pgmon no longer has"
