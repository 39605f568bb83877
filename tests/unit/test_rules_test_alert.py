"""The test-alert command's pure parts: what it sends, and how it reads Alertmanager's counters."""

import re
import shlex
from datetime import UTC, datetime

from tasks.alert_delivery import (
    Delivery,
    add_alerts_command,
    deliveries,
    expected_messages,
    missing_receivers,
    report,
    request_counts,
    wait_for_deliveries,
)
from tasks.render.alertmanager import drill_destinations
from tasks.settings import build_settings

from .conftest import ENVIRON, group_data

# As Alertmanager 0.33.1 writes them with --enable-feature=receiver-name-in-metrics (the drill's receivers
# beside the channels' own).
METRICS = """\
# HELP alertmanager_notification_requests_failed_total The total number of failed notification requests.
# TYPE alertmanager_notification_requests_failed_total counter
alertmanager_notification_requests_failed_total{integration="discord",receiver_name="discord"} 0
alertmanager_notification_requests_failed_total{integration="discord",receiver_name="discord-drill"} 0
alertmanager_notification_requests_failed_total{integration="telegram",receiver_name="telegram"} 3
alertmanager_notification_requests_failed_total{integration="telegram",receiver_name="telegram-drill-chat-1"} 0
alertmanager_notification_requests_failed_total{integration="telegram",receiver_name="telegram-drill-chat-2"} 1
# HELP alertmanager_notification_requests_total The total number of attempted notification requests.
# TYPE alertmanager_notification_requests_total counter
alertmanager_notification_requests_total{integration="discord",receiver_name="discord"} 4
alertmanager_notification_requests_total{integration="discord",receiver_name="discord-drill"} 2
alertmanager_notification_requests_total{integration="telegram",receiver_name="telegram"} 7
alertmanager_notification_requests_total{integration="telegram",receiver_name="telegram-drill-chat-1"} 2
alertmanager_notification_requests_total{integration="telegram",receiver_name="telegram-drill-chat-2"} 3
alertmanager_notification_requests_total{integration="webhook",receiver_name="watchdog"} 1
alertmanager_notifications_total{integration="discord",receiver_name="discord"} 4
"""


def test_one_alert_per_severity_a_channel_takes_in_the_alertmanager_container():
    settings = build_settings(
        group_data(pgmon_project="mon"), ENVIRON
    )  # Discord: both; Telegram: critical
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    docker = shlex.split(add_alerts_command(settings, now))
    assert docker[:5] == ["docker", "exec", "mon-alertmanager", "sh", "-c"] and docker[6:] == [
        ">/dev/null"
    ]
    # Started together and each waited for, so that both reach Alertmanager within its group_wait.
    assert docker[5].endswith('wait "$p0" && wait "$p1"')
    commands = [shlex.split(part) for part in re.findall(r"(.*?) & p\d+=\$!; ", docker[5])]
    assert [c[:5] for c in commands] == [
        [
            "amtool",
            "--alertmanager.url=http://127.0.0.1:9093",
            "--http.config.file=/etc/alertmanager/secrets/api_client.yml",
            "alert",
            "add",
        ]
    ] * 2
    assert [c[5:7] for c in commands] == [
        ["alertname=PgmonTestAlert", "severity=critical"],
        ["alertname=PgmonTestAlert", "severity=warning"],
    ]
    assert "--end=2026-11-22T10:01:00+00:00" in commands[0]
    assert "--annotation=summary=pgmon test alert (critical): this channel works" in commands[0]
    critical_only = build_settings(
        group_data(pgmon_discord={"webhook_url_env": "DISCORD_URL", "severities": ["critical"]}),
        ENVIRON,
    )
    assert "severity=warning" not in add_alerts_command(critical_only, now)


def test_expected_messages_count_every_telegram_chat():
    settings = build_settings(group_data(), {**ENVIRON, "TG_CHAT": "-1,-2,-3"})
    assert expected_messages(settings) == {"discord": 1, "telegram": 3}
    assert expected_messages(build_settings(group_data(pgmon_telegram=None), ENVIRON)) == {
        "discord": 1
    }


def test_each_channel_is_counted_on_its_own_receiver():
    channels = {"discord": "discord", "telegram": "telegram"}
    assert request_counts(METRICS, channels) == {"discord": (4.0, 0.0), "telegram": (7.0, 3.0)}
    drill = drill_destinations(build_settings(group_data(), {**ENVIRON, "TG_CHAT": "-1,-2"}))
    assert drill == {
        "discord": "discord-drill",
        "telegram chat 1": "telegram-drill-chat-1",
        "telegram chat 2": "telegram-drill-chat-2",
    }
    assert request_counts(METRICS, drill) == {
        "discord": (2.0, 0.0),
        "telegram chat 1": (2.0, 0.0),
        "telegram chat 2": (3.0, 1.0),
    }
    # Alertmanager without the feature flag has no receiver names: nothing is counted, so nothing is
    # taken for delivered.
    assert request_counts(re.sub(r',receiver_name="[^"]*"', "", METRICS), channels) == {}


def test_counters_tell_sent_from_refused():
    before = {"discord": (3.0, 0.0), "telegram": (5.0, 1.0)}
    readings = iter(
        [before, request_counts(METRICS, {"discord": "discord", "telegram": "telegram"})]
    )
    times = iter([0.0, 0.0, 1.0])
    result = wait_for_deliveries(
        lambda: next(readings),
        {"discord": 1, "telegram": 2},
        before,
        timeout=60,
        clock=lambda: next(times),
        pause=lambda seconds: None,
    )
    assert result == [Delivery("discord", 1, 1, 0, seconds=1.0), Delivery("telegram", 2, 0, 2)]
    lines = report(result, "mon-alertmanager", 65)
    assert lines[0] == "discord   ok    1 message(s) accepted in 1s"
    assert lines[1].startswith(
        "telegram  FAIL  the service refused 2 request(s); docker logs mon-alertmanager"
    )


def test_waiting_ends_at_the_deadline_and_says_so():
    times = iter([0.0, 30.0, 61.0])
    result = wait_for_deliveries(
        dict, {"discord": 1}, {}, timeout=60, clock=lambda: next(times), pause=lambda seconds: None
    )
    assert result == [Delivery("discord", 1, 0, 0)]
    assert report(result, "mon-alertmanager", 60) == [
        "discord   FAIL  0 of 1 message(s) sent within 60s; docker logs mon-alertmanager"
    ]


def test_counters_started_again_by_a_reload_are_counted_from_zero():
    # A deploy from elsewhere reloads Alertmanager during the wait: its counters start again at 0.
    assert deliveries({"discord": 1}, {"discord": (5.0, 1.0)}, {"discord": (1.0, 0.0)}) == [
        Delivery("discord", 1, 1, 0)
    ]
    assert deliveries({"discord": 1}, {"discord": (5.0, 1.0)}, {"discord": (0.0, 0.0)}) == [
        Delivery("discord", 1, 0, 0)
    ]


def test_an_alertmanager_without_the_receivers_is_named_before_anything_is_sent():
    drill = drill_destinations(build_settings(group_data(), {**ENVIRON, "TG_CHAT": "-1,-2,-3"}))
    # METRICS has the drill's receivers for two chats: the third is what an older configuration lacks.
    assert missing_receivers(request_counts(METRICS, drill), drill) == ["telegram-drill-chat-3"]
    channels = {"discord": "discord", "telegram": "telegram"}
    assert missing_receivers(request_counts(METRICS, channels), channels) == []
    assert missing_receivers({}, channels) == []  # no answer from Alertmanager: the wait says so


def test_a_report_of_nothing_is_empty():
    assert report([], "mon-alertmanager", 60) == []
