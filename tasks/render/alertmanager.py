"""alertmanager.yml: the receivers (Discord, Telegram, a dead man's switch), routing and inhibition."""

from __future__ import annotations

from ..settings import Settings, duration_seconds
from ..stack_model import DRILL_LABEL, yaml_bytes
from .prometheus import label_matcher

# Alertmanager (to 0.34.0 at least, the newest release read) logs a failed Telegram request's error as Go's
# HTTP client made it, and that error quotes the URL, whose path holds the bot token (api_url/bot<token>/...):
# its Discord and webhook notifiers strip the URL (notify.RedactURL), its Telegram one does not. So it runs
# under a shell whose awk replaces any bot token in its output before Docker keeps it. Alertmanager stays
# the shell's child: the traps pass it a stop and the deploy's reload (SIGHUP), and its last lines and exit
# status are kept.
# The image needs sh, mkfifo, mktemp and awk in /bin, as the official busybox-based one has.
_REDACT_BOT_TOKENS = (
    r'{ gsub(/\/bot[0-9]+(:|%3[Aa])[A-Za-z0-9_-]+/, "/bot<redacted>"); print; fflush() }'
)
# An HA group member's peers (settings/cluster.py), one address:port a line, read when Alertmanager starts: a
# member joining or leaving changes this file, not the running members' definitions, so they keep running
# (gossip tells them of a new member; a removed one is forgotten after --cluster.reconnect-timeout).
CLUSTER_PEERS_FILE = "alertmanager/cluster_peers"


def alertmanager_entrypoint(read_peers: bool) -> list[str]:
    """The shell Alertmanager runs under; ``read_peers``: with a ``--cluster.peer`` for each line of the peers
    file. Only shell builtins: the image's busybox may lack sed."""
    peers = (
        [
            f'while read -r peer; do set -- "$@" "--cluster.peer=$peer"; done < /etc/{CLUSTER_PEERS_FILE}'
        ]
        if read_peers
        else []
    )
    return [
        "/bin/sh",
        "-c",
        "\n".join(
            [
                *peers,
                'log=$(mktemp -u /tmp/alertmanager-log.XXXXXX) && mkfifo -m 600 "$log" || exit 1',
                f"awk '{_REDACT_BOT_TOKENS}' < \"$log\" &",
                '/bin/alertmanager "$@" > "$log" 2>&1 &',
                "am=$!",
                "trap 'kill -TERM \"$am\" 2>/dev/null' TERM INT",
                "trap 'kill -HUP \"$am\" 2>/dev/null' HUP",
                'wait "$am"; status=$?',
                'while [ "$status" -gt 128 ] && kill -0 "$am" 2>/dev/null; do wait "$am"; status=$?; done',
                "wait",  # awk: the end of the log
                'rm -f "$log"',
                'exit "$status"',
            ]
        ),
        "alertmanager",  # $0; the service's command gives "$@"
    ]


def render_cluster_peers(settings: Settings) -> bytes:
    cluster = settings.config.cluster
    return "".join(
        f"{address}:{cluster.gossip_port}\n" for address in cluster.peers.values()
    ).encode()


DRILL_GROUP_WAIT = "10s"


def drill_destinations(settings: Settings) -> dict[str, str]:
    """Each destination of the fire drill, as its report names it (Discord; each Telegram chat, numbered in the
    order of the chat-id variable), and the drill's own receiver for it. Alertmanager counts each receiver's
    notifications apart (``--enable-feature=receiver-name-in-metrics``): the drill reports each channel and
    chat, and a real alert sent meanwhile is not taken for the drill's message."""
    destinations = {}
    if settings.discord_webhook_url is not None:
        destinations["discord"] = "discord-drill"
    if settings.telegram_bot_token is not None:
        for chat in range(1, len(settings.telegram_chat_ids) + 1):
            destinations[f"telegram chat {chat}"] = f"telegram-drill-chat-{chat}"
    return destinations


def telegram_chat_file(index: int) -> str:
    """The file (under alertmanager/secrets/) holding the index-th Telegram chat id."""
    return f"telegram_chat_{index}"


def render_alertmanager_config(settings: Settings) -> bytes:
    cfg = settings.config
    timing = cfg.alert_timing
    receivers: list[dict] = [{"name": "blackhole"}]
    watchdog_routes: list[dict] = []
    channel_routes: list[dict] = []
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
        watchdog_routes.append(
            {
                "receiver": "watchdog",
                "matchers": ['alertname="Watchdog"'],
                "group_wait": "0s",
                "group_interval": cfg.watchdog.interval,
                "repeat_interval": cfg.watchdog.interval,
            }
        )
    # The fire drill's receivers and routes: the channels' own configurations under drill_destinations' names,
    # in its order (Discord, then each chat).
    drill_names = iter(drill_destinations(settings).values())
    drill_receivers: list[dict] = []
    drill_routes: list[dict] = []
    if settings.discord_webhook_url is not None:
        discord = {
            "webhook_url_file": "/etc/alertmanager/secrets/discord_webhook_url",
            "send_resolved": True,
            "title": '{{ template "pgmon.title" . }}',
            "message": '{{ template "pgmon.discord.message" . }}',
        }
        route = {
            "receiver": "discord",
            "matchers": [label_matcher("severity", cfg.discord.severities)],
            "continue": True,
        }
        receivers.append({"name": "discord", "discord_configs": [discord]})
        channel_routes.append(route)
        name = next(drill_names)
        drill_receivers.append({"name": name, "discord_configs": [discord]})
        drill_routes.append({**route, "receiver": name})
    if settings.telegram_bot_token is not None:
        # One config per chat: Alertmanager's telegram_configs take a single chat each. The ids are files
        # (Alertmanager 0.31+), like the token, so this file holds no secret.
        chats = [
            {
                "bot_token_file": "/etc/alertmanager/secrets/telegram_bot_token",
                "chat_id_file": f"/etc/alertmanager/secrets/{telegram_chat_file(index)}",
                "api_url": cfg.telegram.api_url,
                "parse_mode": "HTML",
                "send_resolved": True,
                "message": '{{ template "pgmon.telegram.message" . }}',
            }
            for index in range(len(settings.telegram_chat_ids))
        ]
        route = {
            "receiver": "telegram",
            "matchers": [label_matcher("severity", cfg.telegram.severities)],
            "continue": True,
        }
        receivers.append({"name": "telegram", "telegram_configs": chats})
        channel_routes.append(route)
        for chat in chats:
            name = next(drill_names)
            drill_receivers.append({"name": name, "telegram_configs": [chat]})
            drill_routes.append({**route, "receiver": name})
    # The fire drill's alerts (drill.py): one group, so one message per channel and chat, and no further; it
    # waits long enough for amtool to have added every one of them.
    drill = {
        "receiver": "blackhole",
        "matchers": [f'{DRILL_LABEL}="true"'],
        "group_by": [DRILL_LABEL],
        "group_wait": max(timing.group_wait, DRILL_GROUP_WAIT, key=duration_seconds),
        "routes": drill_routes,
    }
    receivers += drill_receivers
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
                "routes": [*([drill] if channel_routes else []), *watchdog_routes, *channel_routes],
            },
            "inhibit_rules": [
                {
                    # While a database is down, its other alerts are noise; a drill's PostgresDown is not
                    # that, and a drill alert is not noise during a real one.
                    "source_matchers": ['alertname="PostgresDown"', f'{DRILL_LABEL}!="true"'],
                    "target_matchers": ['alertname!="PostgresDown"', f'{DRILL_LABEL}!="true"'],
                    "equal": ["database"],
                }
            ],
            "receivers": receivers,
        }
    )
