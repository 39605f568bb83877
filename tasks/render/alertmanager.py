"""alertmanager.yml: the receivers (Discord, Telegram, a dead man's switch), routing and inhibition."""

from __future__ import annotations

from ..settings import Settings
from ..stack_model import yaml_bytes
from .prometheus import label_matcher


def telegram_chat_file(index: int) -> str:
    """The file (under alertmanager/secrets/) holding the index-th Telegram chat id."""
    return f"telegram_chat_{index}"


def render_alertmanager_config(settings: Settings) -> bytes:
    cfg = settings.config
    timing = cfg.alert_timing
    receivers: list[dict] = [{"name": "blackhole"}]
    routes: list[dict] = []
    if settings.watchdog_url is not None:
        receivers.append(
            {
                "name": "watchdog",
                "webhook_configs": [
                    {"url_file": "/etc/alertmanager/secrets/watchdog_url", "send_resolved": False}
                ],
            }
        )
        # The dead man's switch wants the always-firing Watchdog every interval, not every repeat_interval.
        routes.append(
            {
                "receiver": "watchdog",
                "matchers": ['alertname="Watchdog"'],
                "group_wait": "0s",
                "group_interval": cfg.watchdog.interval,
                "repeat_interval": cfg.watchdog.interval,
            }
        )
    if settings.discord_webhook_url is not None:
        receivers.append(
            {
                "name": "discord",
                "discord_configs": [
                    {
                        "webhook_url_file": "/etc/alertmanager/secrets/discord_webhook_url",
                        "send_resolved": True,
                        "title": '{{ template "pgmon.title" . }}',
                        "message": '{{ template "pgmon.discord.message" . }}',
                    }
                ],
            }
        )
        routes.append(
            {
                "receiver": "discord",
                "matchers": [label_matcher("severity", cfg.discord.severities)],
                "continue": True,
            }
        )
    if settings.telegram_bot_token is not None:
        receivers.append(
            {
                "name": "telegram",
                # One config per chat: Alertmanager's telegram_configs take a single chat each. The ids are
                # files (Alertmanager 0.31+), like the token, so this file holds no secret.
                "telegram_configs": [
                    {
                        "bot_token_file": "/etc/alertmanager/secrets/telegram_bot_token",
                        "chat_id_file": f"/etc/alertmanager/secrets/{telegram_chat_file(index)}",
                        "api_url": cfg.telegram.api_url,
                        "parse_mode": "HTML",
                        "send_resolved": True,
                        "message": '{{ template "pgmon.telegram.message" . }}',
                    }
                    for index in range(len(settings.telegram_chat_ids))
                ],
            }
        )
        routes.append(
            {
                "receiver": "telegram",
                "matchers": [label_matcher("severity", cfg.telegram.severities)],
                "continue": True,
            }
        )
    return yaml_bytes(
        {
            "templates": ["/etc/alertmanager/templates/*.tmpl"],
            "route": {
                # Watchdog (severity "none") and anything no channel takes end here.
                "receiver": "blackhole",
                "group_by": ["alertname", "server", "database"],
                "group_wait": timing.group_wait,
                "group_interval": timing.group_interval,
                "repeat_interval": timing.repeat_interval,
                "routes": routes,
            },
            "inhibit_rules": [
                {
                    # While a database is down, its other alerts are noise.
                    "source_matchers": ['alertname="PostgresDown"'],
                    "target_matchers": ['alertname!="PostgresDown"'],
                    "equal": ["database"],
                }
            ],
            "receivers": receivers,
        }
    )
