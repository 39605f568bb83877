"""The demo's fixed settings, its own images and its secrets, drawn on the host and read back unprinted."""

from __future__ import annotations

import re
import shlex

from ..host_state import host_output
from ..settings import DeployError, HostConfig, Settings, SettingsInput, build_settings

PROJECT, BASE_DIR = "pgmon-demo", "/opt/pgmon-demo"
EXTRAS_PROJECT, EXTRAS_DIR = "pgmon-demo-extras", "/opt/pgmon-demo-extras"
POSTGRES_VOLUME = "postgres-data"  # the extras' only volume: uninstall deletes it with them
GRAFANA_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT, SINK_PORT = 3030, 9190, 9193, 3031
# The stack's network of exporters and Alertmanager (render/compose.py names it), which the extras join.
METRICS_NETWORK = f"{PROJECT}-metrics"

POSTGRES, WORKLOAD, SINK = "pgmon-demo-postgres", "pgmon-demo-workload", "pgmon-demo-alert-sink"
SINK_URL = f"http://{SINK}:8080/cgi-bin/receive"  # as Alertmanager reaches it on METRICS_NETWORK
DEFAULT_DEMO_IMAGES = {"postgres": "postgres:17.12", "busybox": "busybox:1.37.0"}
POSTGRES_UID = 999  # the postgres user of the official image (and of the test suite's)
SINK_UID = 65534

SECRETS_DIR = "secrets"
GRAFANA_PASSWORD, GRAFANA_SECRET_KEY, MONITORING_PASSWORD, WORKLOAD_PASSWORD = (
    "grafana_admin_password",
    "grafana_secret_key",
    "monitoring_password",
    "workload_password",
)
SECRET_NAMES = (GRAFANA_PASSWORD, GRAFANA_SECRET_KEY, MONITORING_PASSWORD, WORKLOAD_PASSWORD)
_SECRET_RE = re.compile(r"[0-9a-f]{48}")  # as secrets_command draws them

INCIDENTS = ("start", "end")
PASSED_THROUGH = (
    "pgmon_images",
    "pgmon_dashboard_9628",
    "pgmon_docker_install",
    "pgmon_take_over_lock",
)
# The names build_settings reads the demo's secrets from (a mapping made here, never the environment).
_ENV = {
    GRAFANA_PASSWORD: "PGMON_DEMO_GRAFANA_ADMIN_PASSWORD",
    GRAFANA_SECRET_KEY: "PGMON_DEMO_GRAFANA_SECRET_KEY",
    MONITORING_PASSWORD: "PGMON_DEMO_DATABASE_PASSWORD",
    "discord": "PGMON_DEMO_DISCORD_WEBHOOK_URL",
    "telegram_token": "PGMON_DEMO_TELEGRAM_BOT_TOKEN",
    "telegram_chat": "PGMON_DEMO_TELEGRAM_CHAT_ID",
}


def demo_images(host_data: dict) -> dict[str, str]:
    """The demo's own images: the defaults, or ``pgmon_demo_images``'s (a mirror, the test suite's builds)."""
    given = host_data.get("pgmon_demo_images") or {}
    if not isinstance(given, dict) or any(
        key not in DEFAULT_DEMO_IMAGES or not isinstance(value, str) or not value
        for key, value in given.items()
    ):
        raise DeployError(
            "pgmon_demo_images: give a mapping of "
            f"{', '.join(repr(k) for k in DEFAULT_DEMO_IMAGES)} to images, e.g. "
            f"{{'postgres': 'registry.local/postgres:17.12'}} (defaults: {DEFAULT_DEMO_IMAGES})"
        )
    return {**DEFAULT_DEMO_IMAGES, **given}


def demo_address(current_host) -> str:
    """The host's name as people reach it: the SSH host name without its user, or localhost for @local."""
    name = str(current_host.data.get("ssh_hostname") or current_host.name)
    return "localhost" if name.startswith("@") else name.rpartition("@")[2]


def demo_host_data(host_data: dict, address: str) -> dict:
    """The demo's pgmon settings: fixed, but for the few keys it takes from the host's data."""
    data = {
        "pgmon_project": PROJECT,
        "pgmon_base_dir": BASE_DIR,
        "pgmon_databases": [
            {
                "name": "demo",
                "host": POSTGRES,
                "dbname": "demo",
                "user": "pgmon",
                "password_env": _ENV[MONITORING_PASSWORD],
                "sslmode": "disable",  # inside the stack's own network, which only the demo's containers join
                "pg_stat_statements": True,
            }
        ],
        "pgmon_discord": {"webhook_url_env": _ENV["discord"]},
        "pgmon_telegram": {
            "bot_token_env": _ENV["telegram_token"],
            "chat_id_env": _ENV["telegram_chat"],
            "api_url": f"{SINK_URL}/telegram",
        },
        "pgmon_grafana_admin_password_env": _ENV[GRAFANA_PASSWORD],
        "pgmon_grafana_secret_key_env": _ENV[GRAFANA_SECRET_KEY],
        "pgmon_grafana_port": GRAFANA_PORT,
        "pgmon_prometheus_port": PROMETHEUS_PORT,
        "pgmon_alertmanager_port": ALERTMANAGER_PORT,
        "pgmon_scrape_interval_seconds": 5,
        "pgmon_evaluation_interval_seconds": 5,
        "pgmon_alert_timing": {
            "postgres_down_for": "15s",
            "group_wait": "5s",
            "group_interval": "15s",
            "repeat_interval": "4h",
        },
    }
    if re.fullmatch(r"[A-Za-z0-9.-]+", address):
        data["pgmon_grafana_url"] = f"https://{address}:{GRAFANA_PORT}"
    return data | {key: host_data[key] for key in PASSED_THROUGH if key in host_data}


def secrets_command() -> str:
    """Each secret on a line: the kept one, or a new one from the host's /dev/urandom (the file step keeps it)."""
    lines = []
    for name in SECRET_NAMES:
        path = shlex.quote(f"{EXTRAS_DIR}/{SECRETS_DIR}/{name}")
        lines.append(
            f"if [ -s {path} ]; then cat {path}; "
            "else od -An -N24 -tx1 /dev/urandom | tr -d ' \\n'; fi; echo"
        )
    return "\n".join(lines)


def read_demo_secrets(current_host) -> dict[str, str]:
    """The demo's secrets, read on the host without printing them."""
    values = host_output(current_host, secrets_command())
    if len(values) != len(SECRET_NAMES) or not all(_SECRET_RE.fullmatch(v) for v in values):
        raise DeployError(
            f"pgmon demo: the files in {EXTRAS_DIR}/{SECRETS_DIR} on the host are not the secrets the demo "
            "made (48 hex digits each); delete that folder and run again to make new ones"
        )
    return dict(zip(SECRET_NAMES, values, strict=True))


def demo_environ(secrets: dict[str, str]) -> dict[str, str]:
    """What build_settings reads the demo's secrets from; the channels point at the sink."""
    return {
        _ENV[GRAFANA_PASSWORD]: secrets[GRAFANA_PASSWORD],
        _ENV[GRAFANA_SECRET_KEY]: secrets[GRAFANA_SECRET_KEY],
        _ENV[MONITORING_PASSWORD]: secrets[MONITORING_PASSWORD],
        _ENV["discord"]: f"{SINK_URL}/discord/api/webhooks/4242/pgmon-demo",
        _ENV["telegram_token"]: "4242:pgmon-demo",
        _ENV["telegram_chat"]: "-1004242",
    }


def demo_settings(current_host, secrets: dict[str, str]) -> Settings:
    host_data = current_host.data.dict()
    return build_settings(
        demo_host_data(host_data, demo_address(current_host)), demo_environ(secrets)
    )


def project_config(project: str, base_dir: str, host_data: dict) -> HostConfig:
    """One of the demo's two projects as the host-state reader, the lock and uninstall read it: no secret,
    and its data goes with it."""
    return HostConfig(
        config=SettingsInput(
            project=project,
            base_dir=base_dir,
            take_over_lock=bool(host_data.get("pgmon_take_over_lock")),
            uninstall_delete_data=True,
        )
    )
