"""The Telegram bot token never reaches Alertmanager's log, also when Telegram cannot be reached.

Alertmanager (to 0.34.0 at least; the lab runs 0.33.1) logs a failed Telegram request's error with the
URL, whose path holds the token. Here Telegram's address refuses every connection (a closed port on the
container's own loopback: nothing leaves the machine), an alert routed to Telegram fires, and
Alertmanager's log is searched once it says that the notification failed, then every container's. Then Telegram is back: the
deploy's reload reaches Alertmanager under the shell that filters its log, and an alert reaches Telegram."""

from __future__ import annotations

import subprocess
import time

import pytest

from .lab import DATABASES, Site
from .test_deploy import assert_ok
from .test_incidents import post_alerts

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-tgtoken",
    project="pgmon-tgtoken",
    prometheus_port=19490,
    alertmanager_port=19493,
    grafana_port=13400,
)
UNREACHABLE_TELEGRAM = "http://127.0.0.1:9"


def container_log(container: str) -> str:
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return logs.stdout + logs.stderr


def alertmanager_log(deployment) -> str:
    return container_log(deployment.containers()["alertmanager"])


def test_an_unreachable_telegram_leaves_no_token_in_any_containers_log(new_deployment):
    shop = next(db for db in DATABASES if db.name == "shop")
    with new_deployment("tgtoken", databases=(shop,), site=SITE) as deployment:
        telegram = {**deployment.group_data(["shop"])["pgmon_telegram"]}
        deployment.configure(["shop"], pgmon_telegram={**telegram, "api_url": UNREACHABLE_TELEGRAM})
        assert_ok(deployment.run())
        token = deployment.secrets["PGMON_E2E_TELEGRAM_TOKEN"]
        fire(deployment, "PgmonTokenProbe")
        deadline = time.monotonic() + 90
        log = alertmanager_log(deployment)
        while "connection refused" not in log and time.monotonic() < deadline:
            time.sleep(0.5)
            log = alertmanager_log(deployment)
        assert "connection refused" in log, log[-3000:]  # the failure was logged...
        # ...without the token (a boolean: pytest would print the strings it compares)
        leaked = token.split(":")[1] in log
        assert not leaked, "the Telegram bot token is in Alertmanager's log"
        assert "/bot<redacted>/sendMessage" in log
        leaking = [
            service
            for service, container in deployment.containers().items()
            if token.split(":")[1] in container_log(container)
        ]
        assert not leaking, f"the Telegram bot token is in the log of {leaking}"
        # Telegram back: the deploy's reload (SIGHUP) reaches Alertmanager through the shell (verification
        # compares the configuration it runs), and alerts reach Telegram.
        deployment.configure(["shop"])
        assert_ok(deployment.run())
        fire(deployment, "PgmonTokenProbeDelivered")
        deployment.telegram.wait_for(lambda m: "PgmonTokenProbeDelivered" in m.text, timeout=60)


def fire(deployment, alertname: str) -> None:
    post_alerts(
        [{"labels": {"alertname": alertname, "severity": "critical"}}],
        deployment.site.alertmanager_port,
    )
