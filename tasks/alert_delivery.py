"""Send a test alert through the deployed Alertmanager to every configured channel, and say what came of it.

For "did my webhook and bot token work": ``pyinfra inventory.py send_test_alert.py`` (docs/alerts.md).
One alert ``PgmonTestAlert`` per severity some channel takes, so that every channel gets one. They
are added with the amtool inside the Alertmanager container, so they follow the real routes and
templates; they resolve by themselves after a minute, which also shows the resolved message.
Alertmanager's own counters of notification requests, kept per receiver, then tell whether each channel's
service accepted them (no message is read back from Discord or Telegram). A real alert sent to the same
receiver during the wait counts too: it proves the same webhook or token.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import get_args

from pyinfra import host
from pyinfra.api import deploy, operation

from .host_state import host_output
from .render.api_auth import amtool_command, answer_body, api_request_command
from .reporting import failure, log_lines
from .settings import ChannelSettings, Severity, acting_member, duration_seconds
from .stack_model import container_name

TEST_ALERT = "PgmonTestAlert"
SEVERITIES = get_args(Severity)
TEST_ALERT_LIFETIME = timedelta(minutes=1)
_REQUESTS_RE = re.compile(
    r'^alertmanager_notification_requests(_failed)?_total\{[^}]*receiver_name="([^"]+)"[^}]*\} (\S+)$',
    re.MULTILINE,
)


@dataclass(frozen=True)
class Delivery:
    channel: str
    expected: int  # messages: one per Discord webhook, one per Telegram chat
    sent: int
    refused: int
    seconds: float | None = None  # from sending to the last expected message accepted

    @property
    def ok(self) -> bool:
        return self.sent >= self.expected  # even if a retry was needed on the way


def expected_messages(settings: ChannelSettings) -> dict[str, int]:
    channels = {}
    if settings.discord_webhook_url is not None:
        channels["discord"] = 1
    if settings.telegram_bot_token is not None:
        channels["telegram"] = len(settings.telegram_chat_ids)
    return channels


def amtool_add_alert(
    labels: dict[str, str], annotations: dict[str, str], start: datetime, end: datetime
) -> list[str]:
    """``amtool alert add`` for one alert, as run in the Alertmanager container (``in_alertmanager``)."""
    return [
        *amtool_command(),
        "alert",
        "add",
        *(f"{name}={value}" for name, value in labels.items()),
        *(f"--annotation={name}={value}" for name, value in annotations.items()),
        f"--start={start.isoformat()}",
        f"--end={end.isoformat()}",
    ]


def in_alertmanager(project: str, commands: list[list[str]], at_once: bool = False) -> str:
    """Shell running ``commands`` in one shell of the Alertmanager container, so that the alerts they add follow
    the real routes and templates: one after the other, or ``at_once`` (started together, each waited for) for
    alerts meant for one message, which one after the other can miss a short group_wait on a busy host."""
    if at_once:
        started = "".join(
            f"{shlex.join(command)} & p{i}=$!; " for i, command in enumerate(commands)
        )
        script = started + " && ".join(f'wait "$p{i}"' for i in range(len(commands)))
    else:
        script = " && ".join(shlex.join(command) for command in commands)
    return f"docker exec {shlex.quote(container_name(project, 'alertmanager'))} sh -c {shlex.quote(script)} >/dev/null"


def add_alerts_command(settings: ChannelSettings, now: datetime) -> str:
    """One ``amtool alert add`` per severity that some channel takes, run in the Alertmanager container."""
    sent_at = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    return in_alertmanager(
        settings.config.project,
        [
            amtool_add_alert(
                {"alertname": TEST_ALERT, "severity": severity},
                {
                    "summary": f"pgmon test alert ({severity}): this channel works",
                    "description": (
                        f"Sent at {sent_at} by send_test_alert.py through the Alertmanager pgmon deployed; "
                        "every channel that takes this severity gets it."
                    ),
                    "hint": "Nothing to fix. It resolves by itself in a minute.",
                },
                now,
                now + TEST_ALERT_LIFETIME,
            )
            for severity in taken_severities(settings)
        ],
        at_once=True,
    )


def taken_severities(settings: ChannelSettings) -> list[str]:
    """The severities some channel takes, most severe first."""
    cfg = settings.config
    taken = {s for channel in (cfg.discord, cfg.telegram) if channel for s in channel.severities}
    return [s for s in SEVERITIES if s in taken]


def request_counts(metrics: str, receivers: dict[str, str]) -> dict[str, tuple[float, float]]:
    """destination (a channel, or a chat) -> (notification requests, failed ones) of its receiver in
    ``receivers`` (destination -> receiver name), from Alertmanager's /metrics."""
    counts: dict[str, list[float]] = {}
    for failed, receiver, value in _REQUESTS_RE.findall(metrics):
        counts.setdefault(receiver, [0.0, 0.0])[1 if failed else 0] += float(value)
    return {
        channel: (counts[receiver][0], counts[receiver][1])
        for channel, receiver in receivers.items()
        if receiver in counts
    }


def missing_receivers(counts: dict, receivers: dict[str, str]) -> list[str]:
    """The receivers in ``receivers`` that have no counters in ``counts`` (request_counts' answer), where
    Alertmanager answered. It creates every receiver's counters, at 0, when it loads its configuration: one
    missing is not a message yet to come, and waiting for it would end in a false FAIL."""
    if not counts:
        return []
    return [receiver for destination, receiver in receivers.items() if destination not in counts]


def deliveries(expected: dict[str, int], before: dict, after: dict) -> list[Delivery]:
    result = []
    for channel, count in expected.items():
        total_before, failed_before = before.get(channel, (0.0, 0.0))
        total_after, failed_after = after.get(channel, (0.0, 0.0))
        if total_after < total_before:
            # Alertmanager starts its counters again at 0 when it loads its configuration (a deploy from
            # elsewhere during the wait): count from there, as Prometheus's rate() does.
            total_before = failed_before = 0.0
        refused = int(failed_after - failed_before)
        result.append(Delivery(channel, count, int(total_after - total_before) - refused, refused))
    return result


def wait_for_deliveries(
    read_counts,
    expected: dict[str, int],
    before: dict,
    timeout: float,
    clock=time.monotonic,
    pause=time.sleep,
) -> list[Delivery]:
    """Poll ``read_counts`` until every channel has sent or refused, or the deadline; each channel's
    delivery time is when its last expected message was counted (to half a second)."""
    start = clock()
    seconds: dict[str, float] = {}
    while True:
        result = deliveries(expected, before, read_counts())
        now = clock()
        for delivery in result:
            if delivery.ok:
                seconds.setdefault(delivery.channel, now - start)
        result = [replace(d, seconds=seconds.get(d.channel)) for d in result]
        if all(d.ok or d.refused for d in result) or now >= start + timeout:
            return result
        pause(0.5)


def report(result: list[Delivery], container: str, waited: float) -> list[str]:
    width = max([9, *(len(d.channel) + 1 for d in result)])
    lines = []
    for d in result:
        if d.ok:
            lines.append(
                f"{d.channel:<{width}} ok    {d.sent} message(s) accepted in {d.seconds:.0f}s"
            )
        elif d.refused:
            lines.append(
                f"{d.channel:<{width}} FAIL  the service refused {d.refused} request(s); docker logs "
                f"{container} says why (a wrong webhook URL or bot token, a chat the bot is not in)"
            )
        else:
            lines.append(
                f"{d.channel:<{width}} FAIL  {d.sent} of {d.expected} message(s) sent within "
                f"{waited:.0f}s; docker logs {container}"
            )
    return lines


@operation(is_idempotent=False)
def send(settings: ChannelSettings):
    """
    Send a test alert through the deployed Alertmanager and report, per channel, whether it was delivered.

    + settings: the validated pgmon settings

    **Example:**

    .. code:: python

        send(name="Send a pgmon test alert", settings=settings)
    """
    if not host.state.is_executing:
        return
    container = container_name(settings.config.project, "alertmanager")
    expected = expected_messages(settings)
    try:
        result, waited = add_and_wait(
            settings,
            add_alerts_command(settings, datetime.now(UTC)),
            {channel: channel for channel in expected},  # each channel's own receiver
            expected,
        )
    except OutdatedAlertmanager as outdated:
        yield failure([f"pgmon test alert not sent: {outdated}"])
        return
    lines = report(result, container, waited)
    if all(d.ok for d in result):
        log_lines(host, [f"test alert: {line}" for line in lines])
        return
    yield failure(["pgmon test alert not delivered everywhere:"] + lines)


class OutdatedAlertmanager(Exception):
    """The Alertmanager on the host has no counters for a receiver this pgmon sends through: it runs the
    configuration of an older pgmon."""


def add_and_wait(
    settings: ChannelSettings, add_command: str, receivers: dict[str, str], expected: dict[str, int]
) -> tuple[list[Delivery], float]:
    """Run ``add_command`` (alerts added with amtool) on the host, then wait for the ``expected`` messages of
    each destination (a channel, or a chat), counted on its receiver in ``receivers``; the deliveries and how
    long was waited at most. Called while executing. Raises OutdatedAlertmanager, before adding anything,
    where a receiver has no counters."""
    cfg = settings.config
    metrics = api_request_command(cfg.project, "alertmanager", "GET", "/metrics")

    def read_counts() -> dict:
        # The channels' secrets are all this command reads: the API's password stays in the container.
        status, body = answer_body("\n".join(host_output(host, metrics, check=False)))
        return request_counts(body, receivers) if status == 200 else {}

    before = read_counts()
    missing = missing_receivers(before, receivers)
    if missing:
        raise OutdatedAlertmanager(
            f"Alertmanager on this host has no receiver {', '.join(missing)}: it runs the configuration of an "
            "older pgmon. Run the deploy (pyinfra inventory.py deploy.py), then this again."
        )
    host_output(host, add_command)
    # A new group waits group_wait; an alert joining a group that still exists (a recent
    # test) waits for the group's next group_interval tick.
    waited = (
        duration_seconds(cfg.alert_timing.group_wait)
        + duration_seconds(cfg.alert_timing.group_interval)
        + 30
    )
    return wait_for_deliveries(read_counts, expected, before, waited), waited


def acts_for_the_group(settings: ChannelSettings, what: str) -> bool:
    """Whether this host sends ``what`` (the test alert, the drill): outside an HA group, yes; in one, only the
    member silence.py acts through. Each member adds its own copy of the alerts to its own Alertmanager, and
    gossip does not stop the second copy: the test pair got every drill message twice, 18 s apart."""
    acting = acting_member(
        settings.config.cluster, [h.name for h in host.inventory.get_active_hosts()]
    )
    if acting in (None, host.name):
        return True
    host.log(f"pgmon: {what} goes through {acting}, for the HA group's Alertmanagers")
    return False


@deploy("Send a pgmon test alert")
def send_test_alert(settings: ChannelSettings):
    if acts_for_the_group(settings, "the test alert"):
        send(name="Send a test alert to every channel", settings=settings)
