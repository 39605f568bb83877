"""The fire drill's pure parts: which alerts it sends, how Alertmanager routes, inhibits and groups them, and
the one message per channel they make."""

import shlex
import subprocess
from datetime import UTC, datetime

import pytest
import yaml

from tasks.alert_delivery import Delivery, report
from tasks.drill import DrillAlert, drill_alerts, drill_command
from tasks.render.alertmanager import drill_destinations
from tasks.settings import build_settings

from .conftest import ENVIRON, alert_rules, group_data, needs_amtool, rendered
from .test_rules_routing import (
    DISCORD_DESCRIPTION_LIMIT,
    DISCORD_TITLE_LIMIT,
    TELEGRAM_LIMIT,
    alert,
    group,
    render,
)

BOTH_SEVERITIES = {
    "pgmon_discord": {"webhook_url_env": "DISCORD_URL", "severities": ["critical", "warning"]},
    "pgmon_telegram": {
        "bot_token_env": "TG_TOKEN",
        "chat_id_env": "TG_CHAT",
        "severities": ["critical"],
    },
}


def test_one_drill_alert_per_rule_and_severity_a_channel_takes():
    settings = build_settings(group_data(**BOTH_SEVERITIES), ENVIRON)
    alerts = drill_alerts(settings)
    rules = alert_rules(settings)
    expected = {
        (name, rule["labels"]["severity"])
        for name, variants in rules.items()
        for rule in variants
        if rule["labels"]["severity"] != "none"
    }
    assert {(a.name, a.severity) for a in alerts} == expected and len(alerts) == len(expected)
    assert "Watchdog" in rules and "Watchdog" not in {a.name for a in alerts}
    assert all(a.runbook_url.endswith("#" + a.name.lower()) for a in alerts)
    critical_only = build_settings(
        group_data(
            pgmon_discord={"webhook_url_env": "DISCORD_URL", "severities": ["critical"]},
            pgmon_telegram=None,
        ),
        ENVIRON,
    )
    assert {a.severity for a in drill_alerts(critical_only)} == {"critical"}


def test_the_drill_adds_every_alert_in_one_shell_of_the_alertmanager_container(settings):
    start, end = datetime(2026, 12, 6, 3, 0, tzinfo=UTC), datetime(2026, 12, 6, 3, 10, tzinfo=UTC)
    docker = shlex.split(drill_command("pgmon", drill_alerts(settings), start, end))
    assert docker[:5] == ["docker", "exec", "pgmon-alertmanager", "sh", "-c"]
    commands = [shlex.split(part) for part in docker[5].split(" && ")]
    assert len(commands) == len(drill_alerts(settings))
    for command, drilled in zip(commands, drill_alerts(settings), strict=True):
        assert command[:5] == [
            "amtool",
            "--alertmanager.url=http://127.0.0.1:9093",
            "--http.config.file=/etc/alertmanager/secrets/api_client.yml",
            "alert",
            "add",
        ]
        assert command[5:8] == [
            f"alertname={drilled.name}",
            f"severity={drilled.severity}",
            "pgmon_drill=true",
        ]
        assert f"--annotation=runbook_url={drilled.runbook_url}" in command
        assert f"--annotation=summary=DRILL {drilled.name} ({drilled.severity}): no incident" in (
            command
        )
        assert command[-2:] == [f"--start={start.isoformat()}", f"--end={end.isoformat()}"]


def routes_test(config_file, labels: list[str], receivers: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={config_file}",
            f"--verify.receivers={receivers}",
            *labels,
        ],
        capture_output=True,
        text=True,
    )


@needs_amtool
def test_drill_alerts_reach_the_channels_of_their_severity_and_real_ones_route_as_before(tmp_path):
    settings = build_settings(group_data(**BOTH_SEVERITIES), ENVIRON)
    config = tmp_path / "alertmanager.yml"
    config.write_bytes(rendered(settings, "alertmanager/alertmanager.yml").content)
    cases = [
        (
            ["pgmon_drill=true", "alertname=PostgresDown", "severity=critical"],
            "discord-drill,telegram-drill-chat-1",
        ),
        (["pgmon_drill=true", "alertname=DeadTuples", "severity=warning"], "discord-drill"),
        (["alertname=PostgresDown", "severity=critical", "database=shop"], "discord,telegram"),
        (["alertname=DeadTuples", "severity=warning", "database=shop"], "discord"),
    ]
    for labels, receivers in cases:
        result = routes_test(config, labels, receivers)
        assert result.returncode == 0, (labels, result.stdout + result.stderr)
    # It can fail: a warning drill alert goes to Discord only, and not to the real alerts' receiver.
    assert routes_test(config, cases[1][0], "discord-drill,telegram-drill-chat-1").returncode != 0
    assert routes_test(config, cases[1][0], "discord").returncode != 0


def test_drill_alerts_are_one_group_and_never_inhibit_or_are_inhibited(settings):
    config = yaml.safe_load(rendered(settings, "alertmanager/alertmanager.yml").content)
    drill = config["route"]["routes"][0]
    assert drill["matchers"] == ['pgmon_drill="true"'] and drill["group_by"] == ["pgmon_drill"]
    assert "continue" not in drill  # the drill's alerts go no further than its own routes
    assert drill["group_wait"] == "30s"  # the configured one, at least 10s
    (inhibit,) = config["inhibit_rules"]
    assert 'pgmon_drill!="true"' in inhibit["source_matchers"]
    assert 'pgmon_drill!="true"' in inhibit["target_matchers"]
    quick = build_settings(group_data(pgmon_alert_timing={"group_wait": "1s"}), ENVIRON)
    quick_config = yaml.safe_load(rendered(quick, "alertmanager/alertmanager.yml").content)
    assert quick_config["route"]["routes"][0]["group_wait"] == "10s"


def drill_group(alerts: list[DrillAlert], status: str = "firing") -> dict:
    members = [
        alert(status, {"alertname": a.name, "severity": a.severity, "pgmon_drill": "true"})
        for a in alerts
    ]
    return group(members, common={"pgmon_drill": "true"})


@needs_amtool
def test_the_drill_message_is_marked_and_lists_every_alert(settings, tmp_path):
    alerts = drill_alerts(settings)
    data = drill_group(alerts)
    title = render("pgmon.title", data, tmp_path)
    assert (
        title
        == f"[DRILL · FIRING:{len(alerts)}] pgmon fire drill: {len(alerts)} alerts, no incident"
    )
    for name in ("pgmon.discord.message", "pgmon.telegram.message"):
        text = render(name, data, tmp_path)
        assert "Sent by drill.py: nothing is wrong." in text
        for drilled in alerts:
            assert f"• {drilled.name} ({drilled.severity})" in text, (name, drilled)
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert telegram.startswith(f"<b>[DRILL · FIRING:{len(alerts)}] pgmon fire drill")
    resolved = render("pgmon.title", drill_group(alerts, "resolved"), tmp_path)
    assert resolved.startswith("[DRILL · RESOLVED] pgmon fire drill")


@needs_amtool
@pytest.mark.parametrize("count", [61, 200])
def test_a_drill_of_any_size_stays_within_the_limits(count, tmp_path):
    long = [DrillAlert("A<b>&" * 30 + str(i), "critical*_<x>", "") for i in range(count)]
    data = drill_group(long)
    discord = render("pgmon.discord.message", data, tmp_path)
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert len(render("pgmon.title", data, tmp_path)) <= DISCORD_TITLE_LIMIT
    assert len(discord) <= DISCORD_DESCRIPTION_LIMIT and len(telegram) <= TELEGRAM_LIMIT
    assert f"… {count} alerts in all." in discord
    for text in (discord, telegram.split("</b>", 1)[1]):
        assert not any(c in text for c in "<>&*_")  # nothing a channel would read as markup


def test_the_drill_reports_each_channel_and_chat_from_a_receiver_of_its_own():
    settings = build_settings(group_data(**BOTH_SEVERITIES), {**ENVIRON, "TG_CHAT": "-1,-2,-3"})
    config = yaml.safe_load(rendered(settings, "alertmanager/alertmanager.yml").content)
    destinations = drill_destinations(settings)
    assert list(destinations) == [
        "discord",
        "telegram chat 1",
        "telegram chat 2",
        "telegram chat 3",
    ]
    # The drill route sends to exactly these receivers, and each exists.
    assert [route["receiver"] for route in config["route"]["routes"][0]["routes"]] == list(
        destinations.values()
    )
    assert set(destinations.values()) <= {receiver["name"] for receiver in config["receivers"]}
    result = [Delivery("discord", 1, 1, 0, seconds=12.0), Delivery("telegram chat 2", 1, 0, 1)]
    assert report(result, "pgmon-alertmanager", 60) == [
        "discord          ok    1 message(s) accepted in 12s",
        "telegram chat 2  FAIL  the service refused 1 request(s); docker logs pgmon-alertmanager says why "
        "(a wrong webhook URL or bot token, a chat the bot is not in)",
    ]
