"""Dashboard links in alerts (pgmon_grafana_url): the rules' `dashboard` annotation, proven with promtool on every
rule test, and how the Discord and Telegram messages show it within their limits."""

import re
import subprocess
from urllib.parse import quote_plus

import pytest
import yaml

from tasks.render.prometheus import render_recording_rules, render_rules
from tasks.settings import build_settings

from .conftest import ENVIRON, alert_rules, error_for, group_data, needs_amtool, needs_promtool
from .test_rules_promtool import RULE_TESTS, rule_test_settings
from .test_rules_routing import (
    DISCORD_DESCRIPTION_LIMIT,
    NASTY,
    TELEGRAM_LIMIT,
    alert,
    group,
    render,
    telegram_text_outside_markup,
)

GRAFANA = "https://grafana.example.com/grafana"
UID = "pgmon-postgresql-9628"


def link(server: str, database: str | None = None, grafana: str = GRAFANA) -> str:
    """The link an alert about ``server`` (and ``database``) carries: Go's urlquery is Python's quote_plus."""
    url = f"{grafana}/d/{UID}/?var-server={quote_plus(server)}"
    return url + (f"&var-instance={quote_plus(database)}" if database else "")


def test_without_the_setting_alerts_carry_no_link(settings):
    assert all(
        "dashboard" not in rule["annotations"]
        for rules in alert_rules(settings).values()
        for rule in rules
    )


def test_every_database_and_server_alert_links_to_9628_and_host_alerts_do_not():
    rules = alert_rules(build_settings(group_data(pgmon_grafana_url=GRAFANA + "/"), ENVIRON))
    host = {"HostExporterDown", "HostHighCpu", "HostLowMemory", "HostDiskFull", "Watchdog"}
    for name, variants in rules.items():
        for rule in variants:
            if name in host:
                assert "dashboard" not in rule["annotations"], name
            else:
                assert rule["annotations"]["dashboard"] == (
                    f"{GRAFANA}/d/{UID}/?var-server={{{{ $labels.server | urlquery }}}}"
                    "{{ with $labels.database }}&var-instance={{ . | urlquery }}{{ end }}"
                ), name


@needs_promtool
def test_every_rule_test_passes_with_each_alert_linking_its_own_server_and_database(tmp_path):
    """tests/rules/*.yml with links on: every expected alert that has a server gains the link Prometheus
    renders from its own labels (database alerts with var-instance, server alerts without)."""
    settings = rule_test_settings(pgmon_grafana_url=GRAFANA)
    (tmp_path / "pgmon.rules.yml").write_bytes(render_rules(settings))
    (tmp_path / "pgmon.recording.yml").write_bytes(render_recording_rules(settings))
    names, linked = [], 0
    for test_file in sorted(RULE_TESTS.glob("*.yml")):
        tests = yaml.safe_load(test_file.read_text())
        for test in tests["tests"]:
            for case in test.get("alert_rule_test", []):
                for expected in case.get("exp_alerts") or []:
                    labels = expected.get("exp_labels", {})
                    if "server" in labels:
                        expected.setdefault("exp_annotations", {})["dashboard"] = link(
                            labels["server"], labels.get("database")
                        )
                        linked += 1
        (tmp_path / test_file.name).write_text(yaml.safe_dump(tests, allow_unicode=True))
        names.append(test_file.name)
    assert linked > 40
    result = subprocess.run(
        ["promtool", "test", "rules", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr


@pytest.mark.parametrize(
    "value, problem",
    [
        ("grafana.example.com", "is not the http(s) address of Grafana"),
        ("ftp://grafana.example.com", "is not the http(s) address of Grafana"),
        ("https://grafana.example.com/?orgId=1", "no query or fragment"),
        ("https://grafana.example.com/#x", "no query or fragment"),
        ("https://grafana.example.com/a b", "is not the http(s) address"),
        ("https://grafana.example.com/(x)", "is not the http(s) address"),
        ("https://grafana.example.com/" + "a" * 130, "is longer than 150 characters"),
    ],
)
def test_the_grafana_address_is_checked(value, problem):
    assert "pgmon_grafana_url: " in (message := error_for(group_data(pgmon_grafana_url=value)))
    assert problem in message


def test_the_grafana_address_reads_back_without_a_trailing_slash():
    settings = build_settings(group_data(pgmon_grafana_url="http://10.0.0.5:3000/"), ENVIRON)
    assert settings.config.grafana_url == "http://10.0.0.5:3000"


# ---------------------------------------------------------------- the messages, through amtool


def linked_group(alerts: list[dict], url: str) -> dict:
    """A group whose alerts all carry ``url``, as Alertmanager gives it: in the common annotations."""
    data = group([{**a, "annotations": {**a["annotations"], "dashboard": url}} for a in alerts])
    data["commonAnnotations"] = {"dashboard": url}
    return data


def with_runbook(data: dict, url: str) -> dict:
    """``data`` with ``url`` as every alert's runbook_url, in the common annotations as Alertmanager gives it."""
    for a in data["alerts"]:
        a["annotations"]["runbook_url"] = url
    data["commonAnnotations"] = {**data["commonAnnotations"], "runbook_url": url}
    return data


@needs_amtool
def test_both_channels_show_the_link_once_after_the_alerts(tmp_path):
    url = link("db1:5432", "shop", "https://grafana.example.com")
    data = linked_group([alert(), alert(labels={"thresholds": "x"})], url)
    discord = render("pgmon.discord.message", data, tmp_path)
    assert (
        discord.endswith(f"\n\n[Open the dashboard]({url})")
        and discord.count("Open the dashboard") == 1
    )
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert telegram.endswith(
        '\n\n<a href="https://grafana.example.com/d/pgmon-postgresql-9628/'
        '?var-server=db1%3A5432&amp;var-instance=shop">Open the dashboard</a>'
    )
    resolved = render("pgmon.telegram.message", linked_group([alert("resolved")], url), tmp_path)
    assert "Open the dashboard" in resolved
    assert "Open the dashboard" not in render("pgmon.discord.message", group([alert()]), tmp_path)


@needs_amtool
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)//d/x/?var-server=a",
        'https://g.example.com/d/x/?var-server=a"><b>x</b>',
        "https://g.example.com/d/x/?var-server=a)[x](http://evil",
        "https://g.example.com/d/x/?var-server=a b",
        "https://g.example.com/" + "g" * 430 + "/d/x/?var-server=a",  # 451 characters
        NASTY,
    ],
)
def test_a_link_not_in_the_shape_pgmon_writes_or_too_long_is_left_out(url, tmp_path):
    data = linked_group([alert()], url)
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert "Open the dashboard" not in telegram and "Open the dashboard" not in render(
        "pgmon.discord.message", data, tmp_path
    )
    assert not re.search(r"[<>&]", telegram_text_outside_markup(telegram))


@needs_amtool
@pytest.mark.parametrize("count", [1, 3, 12, 200])
def test_with_the_longest_link_many_alerts_with_long_values_stay_within_the_limits(count, tmp_path):
    url = "https://g.example.com/" + "g" * 391 + "/d/x/?var-server=a%3A1&var-instance=b"
    assert len(url) == 450
    long = NASTY * 60
    alerts = [
        alert(
            summary=f"#{i} {long}",
            description=long,
            hint=long,
            labels={"server": "db1:5432" + long, "database": f"db{i}"},
        )
        for i in range(count)
    ]
    # The longest runbook link the templates show, beside it.
    runbook = "https://w.example.com/" + "r" * 143 + "#lockcontention"
    assert len(runbook) == 180
    data = with_runbook(linked_group(alerts, url), runbook)
    data["commonLabels"] = {
        "alertname": "IdleInTransaction" + long,
        "server": "db1:5432" + long,
        "database": "shop",
        "severity": "warning",
    }
    discord = render("pgmon.discord.message", data, tmp_path)
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert url in discord and url.replace("&", "&amp;") in telegram
    assert f"[Runbook]({runbook})" in discord and f'<a href="{runbook}">Runbook</a>' in telegram
    assert len(discord) <= DISCORD_DESCRIPTION_LIMIT
    assert len(telegram) <= TELEGRAM_LIMIT
