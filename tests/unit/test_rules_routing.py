"""Routing (alertmanager.yml) and the notification templates, rendered by amtool as Alertmanager would."""

import json
import re
import subprocess

import pytest
import yaml

from tasks.settings import build_settings
from tasks.stack_model import TEMPLATES_DIR

from .conftest import ENVIRON, error_for, group_data, needs_amtool, rendered

TEMPLATE = TEMPLATES_DIR / "alertmanager" / "pgmon.tmpl"
TELEGRAM_LIMIT, DISCORD_DESCRIPTION_LIMIT, DISCORD_TITLE_LIMIT = 4096, 4096, 256
# Text that breaks HTML and markdown, as label values and annotations can hold it.
NASTY = "<b>x</b> & \"q\" 'a' *b* _i_ ~s~ |sp| `c` > [l](http://x) #h \\ "


def alertmanager_config(settings) -> dict:
    return yaml.safe_load(rendered(settings, "alertmanager/alertmanager.yml").content)


def test_routing_follows_each_channels_severities_and_every_chat():
    settings = build_settings(
        group_data(
            pgmon_discord={"webhook_url_env": "DISCORD_URL", "severities": ["critical"]},
            pgmon_telegram={
                "bot_token_env": "TG_TOKEN",
                "chat_id_env": "TG_CHAT",
                "severities": ["critical", "warning"],
            },
        ),
        {**ENVIRON, "TG_CHAT": "-1001, -1002,-1001"},
    )
    config = alertmanager_config(settings)
    drill, *channel_routes = config["route"]["routes"]
    # The fire drill reaches the same channels with the same configurations, through receivers of its own:
    # Discord's, and one per Telegram chat.
    receivers = {r.pop("name"): r for r in config["receivers"]}
    assert drill["routes"] == [
        {**channel_routes[0], "receiver": "discord-drill"},
        {**channel_routes[1], "receiver": "telegram-drill-chat-1"},
        {**channel_routes[1], "receiver": "telegram-drill-chat-2"},
    ]
    assert receivers["discord-drill"] == receivers["discord"]
    assert [receivers[f"telegram-drill-chat-{chat}"]["telegram_configs"] for chat in (1, 2)] == [
        [config] for config in receivers["telegram"]["telegram_configs"]
    ]
    assert len(receivers) == 6  # and blackhole
    routes = {r["receiver"]: r["matchers"] for r in channel_routes}
    assert routes == {
        "discord": ['severity="critical"'],
        "telegram": ['severity=~"critical|warning"'],
    }
    telegram = receivers["telegram"]["telegram_configs"]
    assert [t["chat_id_file"] for t in telegram] == [
        "/etc/alertmanager/secrets/telegram_chat_0",
        "/etc/alertmanager/secrets/telegram_chat_1",
    ]
    chats = [rendered(settings, f"alertmanager/secrets/telegram_chat_{index}") for index in (0, 1)]
    assert [chat.content for chat in chats] == [b"-1001", b"-1002"] and all(
        chat.secret for chat in chats
    )
    assert all(t["send_resolved"] and t["parse_mode"] == "HTML" for t in telegram)
    assert config["route"]["group_by"] == ["alertname", "server", "database"]
    assert config["route"]["receiver"] == "blackhole"  # where Watchdog (severity "none") ends


def test_severities_and_chat_ids_are_checked():
    message = error_for(
        group_data(
            pgmon_discord={"webhook_url_env": "DISCORD_URL", "severities": []},
            pgmon_telegram={
                "bot_token_env": "TG_TOKEN",
                "chat_id_env": "TG_CHAT",
                "severities": ["info"],
            },
        )
    )
    assert "pgmon_discord.severities: list at least one severity" in message
    assert "pgmon_telegram.severities[0]: Input should be 'critical' or 'warning'" in message
    assert "or several separated by commas" in error_for(
        group_data(), {**ENVIRON, "TG_CHAT": "-1001;-1002"}
    )


def test_watchdog_pings_the_dead_mans_switch_every_interval():
    settings = build_settings(
        group_data(pgmon_watchdog={"url_env": "WATCHDOG", "interval": "2m"}),
        {**ENVIRON, "WATCHDOG": "https://hc-ping.example/uuid"},
    )
    config = alertmanager_config(settings)
    assert config["route"]["routes"][1] == {  # after the fire drill's, before every channel's
        "receiver": "watchdog",
        "matchers": ['alertname="Watchdog"'],
        "group_wait": "0s",
        "group_interval": "2m",
        "repeat_interval": "2m",
    }
    webhook = next(r for r in config["receivers"] if r["name"] == "watchdog")["webhook_configs"][0]
    assert webhook["url_file"] == "/etc/alertmanager/secrets/watchdog_url"
    secret = rendered(settings, "alertmanager/secrets/watchdog_url")
    assert (
        secret.content == b"https://hc-ping.example/uuid" and secret.secret and secret.mode == 0o400
    )
    assert "pgmon_watchdog.url_env: the environment variable named there is not set" in error_for(
        group_data(pgmon_watchdog={"url_env": "WATCHDOG"})
    )


# ---------------------------------------------------------------- the messages, through amtool


def alert(status: str = "firing", labels: dict | None = None, **annotations) -> dict:
    return {
        "status": status,
        "labels": {
            "alertname": "IdleInTransaction",
            "severity": "warning",
            "database": "shop",
            "server": "db1:5432",
            **(labels or {}),
        },
        "annotations": {
            "summary": "Session idle in a transaction for 7m in shop on db1:5432",
            "description": "A session opened a transaction 7m ago and sits idle in it.",
            "hint": "SELECT pid FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
            **annotations,
        },
        "startsAt": "2026-11-22T10:00:00Z",
        "endsAt": "2026-11-22T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }


def group(alerts: list[dict], common: dict | None = None) -> dict:
    firing = any(a["status"] == "firing" for a in alerts)
    common = common if common is not None else alerts[0]["labels"]
    return {
        "receiver": "x",
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://am",
    }


def render(name: str, data: dict, tmp_path) -> str:
    """What Alertmanager sends: Telegram's HTML parse mode runs the template as html/template."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    kind = "html" if name.startswith("pgmon.telegram.") else "text"
    result = subprocess.run(
        [
            "amtool",
            "template",
            "render",
            f"--template.glob={TEMPLATE}",
            f"--template.data={data_file}",
            f'--template.text={{{{ template "{name}" . }}}}',
            f"--template.type={kind}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.removesuffix("\n")  # amtool ends what it prints with a newline


def telegram_text_outside_markup(text: str) -> str:
    """What is left when pgmon's own <b></b> and every HTML entity are taken out."""
    return re.sub(r"&(#[0-9]+|[a-z]+);", "", text.replace("<b>", "").replace("</b>", ""))


@needs_amtool
def test_first_line_says_how_bad_what_and_where(tmp_path):
    one = group([alert()])
    assert (
        render("pgmon.title", one, tmp_path)
        == "[FIRING:1 · WARNING] IdleInTransaction · shop on db1:5432"
    )
    telegram = render("pgmon.telegram.message", one, tmp_path)
    assert (
        telegram.splitlines()[0]
        == "<b>[FIRING:1 · WARNING] IdleInTransaction · shop on db1:5432</b>"
    )
    assert "Since 2026-11-22 10:00 UTC" in telegram and "Check: SELECT pid FROM" in telegram
    server_wide = group(
        [alert(labels={"alertname": "TooManyConnections", "database": ""})],
        {"alertname": "TooManyConnections", "server": "db1:5432", "severity": "warning"},
    )
    assert render("pgmon.title", server_wide, tmp_path).endswith("TooManyConnections · db1:5432")
    host = group(
        [alert(labels={"alertname": "HostDiskFull"})],
        {"alertname": "HostDiskFull", "severity": "warning"},
    )
    assert render("pgmon.title", host, tmp_path).endswith("HostDiskFull · the processing host")


@needs_amtool
def test_resolved_messages_say_when(tmp_path):
    resolved = group([alert("resolved")])
    assert render("pgmon.title", resolved, tmp_path).startswith(
        "[RESOLVED · WARNING] IdleInTransaction"
    )
    text = render("pgmon.discord.message", resolved, tmp_path)
    assert "Resolved 2026-11-22 10:30 UTC, firing since 10:00 UTC" in text
    mixed = group([alert(), alert("resolved")])
    assert "Resolved meanwhile: 1." in render("pgmon.telegram.message", mixed, tmp_path)


@needs_amtool
@pytest.mark.parametrize("count", [1, 3, 12, 200])
def test_many_alerts_with_long_values_stay_within_the_limits(count, tmp_path):
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
    data = group(
        alerts,
        {
            "alertname": "IdleInTransaction" + long,
            "server": "db1:5432" + long,
            "database": "shop",
            "severity": "warning",
        },
    )
    title = render("pgmon.title", data, tmp_path)
    discord = render("pgmon.discord.message", data, tmp_path)
    telegram = render("pgmon.telegram.message", data, tmp_path)
    assert len(title) <= DISCORD_TITLE_LIMIT and "\n" not in title
    assert len(discord) <= DISCORD_DESCRIPTION_LIMIT
    assert len(telegram) <= TELEGRAM_LIMIT
    assert f"#{min(count, 11) - 1} " in telegram  # up to 11 alerts named
    if count > 11:
        assert f"… {count} alerts in all" in telegram and f"#{11} " not in telegram


@needs_amtool
def test_values_are_escaped_for_each_channel(tmp_path):
    data = group([alert(summary=NASTY, description=NASTY, hint=NASTY, labels={"database": "d<&>"})])
    telegram = render("pgmon.telegram.message", data, tmp_path)
    # Telegram's HTML mode: pgmon's <b> tags and entities only, every tag closed.
    assert not re.search(r"[<>&]", telegram_text_outside_markup(telegram)), telegram
    assert telegram.count("<b>") == telegram.count("</b>") == 2
    assert (
        "&lt;b&gt;x&lt;/b&gt; &amp; \"q\" 'a' *b*" in telegram and "d&lt;&amp;&gt; on" in telegram
    )
    discord = render("pgmon.discord.message", data, tmp_path)
    assert (
        r"<b\>x</b\> & " in discord
        and r"\*b\* \_i\_ \~s\~ \|sp\| \`c\` \> \[l\](http://x) \#h \\" in discord
    )


@needs_amtool
def test_a_cut_never_splits_an_escape(tmp_path):
    # 158 characters, then entities: the cut at 160 falls inside "&amp;".
    summary = "x" * 158 + "&&&&"
    telegram = render("pgmon.telegram.message", group([alert(summary=summary)]), tmp_path)
    assert "<b>" + "x" * 158 + "…</b>" in telegram
    discord = render("pgmon.discord.message", group([alert(summary="x" * 159 + "**")]), tmp_path)
    assert "**" + "x" * 159 + "…**" in discord
