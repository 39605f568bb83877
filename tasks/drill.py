"""A fire drill: one synthetic alert shaped like each of pgmon's rules, through the deployed Alertmanager.

For "would the night shift hear about it": ``pyinfra inventory.py drill.py`` (docs/alerts.md). The alerts
carry each rule's name, severity and runbook link and the label ``pgmon_drill="true"``; Alertmanager's drill
route (render/alertmanager.py) groups them into one message per channel and chat, marked as a drill, and
no drill alert inhibits a real one or is inhibited. That route sends through the drill's own receivers, one
for Discord and one per Telegram chat, so pgmon reports, per channel and chat, whether the service accepted
the drill's message (not a real alert's sent meanwhile) and how long delivery took, and resolves the alerts.
Nothing is caused on a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml
from pyinfra import host
from pyinfra.api import deploy, operation

from .alert_delivery import (
    OutdatedAlertmanager,
    acts_for_the_group,
    add_and_wait,
    amtool_add_alert,
    in_alertmanager,
    report,
    taken_severities,
)
from .host_state import host_output
from .render.alertmanager import drill_destinations
from .render.prometheus import render_rules
from .reporting import failure, log_lines
from .settings import ChannelSettings
from .stack_model import DRILL_LABEL, container_name

# Should the drill be cut short, its alerts resolve by themselves.
DRILL_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True)
class DrillAlert:
    name: str
    severity: str
    runbook_url: str


def drill_alerts(settings: ChannelSettings) -> list[DrillAlert]:
    """One per rule and severity in the rules the deploy renders (Watchdog, which pages no one, left out),
    for the severities some channel takes, in the rules' order."""
    taken = set(taken_severities(settings))
    alerts: dict[tuple[str, str], DrillAlert] = {}
    for group in yaml.safe_load(render_rules(settings))["groups"]:
        for rule in group["rules"]:
            severity = rule.get("labels", {}).get("severity")
            if "alert" in rule and severity in taken:
                alert = DrillAlert(rule["alert"], severity, rule["annotations"]["runbook_url"])
                alerts.setdefault((alert.name, alert.severity), alert)
    return list(alerts.values())


def drill_command(project: str, alerts: list[DrillAlert], start: datetime, end: datetime) -> str:
    """Shell adding (``end`` ahead) or resolving (``end`` now) ``alerts``, in the Alertmanager container."""
    began = start.strftime("%Y-%m-%d %H:%M:%S UTC")
    return in_alertmanager(
        project,
        [
            amtool_add_alert(
                {"alertname": alert.name, "severity": alert.severity, DRILL_LABEL: "true"},
                {
                    "summary": f"DRILL {alert.name} ({alert.severity}): no incident",
                    "description": f"A fire drill begun at {began} by drill.py; nothing is wrong.",
                    "hint": "Nothing to fix: the drill resolves it.",
                    "runbook_url": alert.runbook_url,
                },
                start,
                end,
            )
            for alert in alerts
        ],
    )


@operation(is_idempotent=False)
def run_drill(settings: ChannelSettings):
    """
    Send the drill's alerts, report per channel and chat whether they arrived and how long it took, then
    resolve them.

    + settings: the validated pgmon settings

    **Example:**

    .. code:: python

        run_drill(name="Run a pgmon fire drill", settings=settings)
    """
    if not host.state.is_executing:
        return
    project = settings.config.project
    alerts = drill_alerts(settings)  # the rules rendered once, for adding and for resolving
    destinations = drill_destinations(settings)
    start = datetime.now(UTC)
    try:
        result, waited = add_and_wait(
            settings,
            drill_command(project, alerts, start, start + DRILL_LIFETIME),
            destinations,
            dict.fromkeys(destinations, 1),
        )
    except OutdatedAlertmanager as outdated:
        yield failure([f"pgmon drill not run: {outdated}"])
        return
    finally:
        # Also when nothing was added: Alertmanager sends no all-clear for an alert it never sent.
        host_output(host, drill_command(project, alerts, start, datetime.now(UTC)))
    lines = [f"{len(alerts)} drill alerts, one message per channel and chat"]
    lines += report(result, container_name(project, "alertmanager"), waited)
    lines.append(
        "resolved: the all-clear follows at the group's next tick "
        f"(pgmon_alert_timing.group_interval, {settings.config.alert_timing.group_interval})"
    )
    if all(d.ok for d in result):
        log_lines(host, [f"drill: {line}" for line in lines])
        return
    yield failure(["pgmon drill: not delivered everywhere:"] + lines)


@deploy("Run a pgmon fire drill")
def fire_drill(settings: ChannelSettings):
    if acts_for_the_group(settings, "the drill"):
        run_drill(
            name="Send one drill alert per rule to every channel, then resolve them",
            settings=settings,
        )
