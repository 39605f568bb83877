"""Maintenance silences through the deployed Alertmanager: silence one database or one server for a while with a
reason, list the active silences, end one early (docs/alerts.md, "Maintenance silences").

    pyinfra inventory.py silence.py                      # the active silences, with their ids
    pyinfra inventory.py silence.py --data pgmon_silence='{"database": "shop", "for": "2h", "reason": "VACUUM FULL"}'
    pyinfra inventory.py silence.py --data pgmon_silence='{"server": "db1.internal:5432", "for": "30m", "reason": "..."}'
    pyinfra inventory.py silence.py --data pgmon_silence='{"end": "<id>"}'

Same inventory, group_data and environment as the deploy. Like the test alert (alert_delivery.py), each step is
the amtool inside the Alertmanager container, so a silence is Alertmanager's own: it is kept in its data volume,
shown in its UI, and ``amtool silence`` there sees it too. A database's silence matches ``database="<name>"``:
every alert about that database, server-wide ones that name it included; a server's matches ``server="host:port"``:
every alert about that server and its databases.

In an HA group (settings/cluster.py) the members' Alertmanagers share their silences: a silence is added or ended
through one member of the run, the first by name among those that answered, and every member lists it.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import socket
from datetime import UTC, datetime

from pyinfra import host
from pyinfra.api import deploy, operation

from .host_state import host_output
from .render.api_auth import amtool_command
from .reporting import failure, log_lines
from .settings import SILENCE_ID_RE, HostConfig, Silence, acting_member, load_config
from .stack_model import container_name

_EXIT_RE = re.compile(r"^pgmon-exit=([0-9]+)$")
_TIME_RE = re.compile(r"^([0-9-]+T[0-9:]+)(\.[0-9]+)?(Z|[+-][0-9:]+)$")


def amtool(settings: HostConfig, *args: str) -> str:
    """``amtool args`` in the deployed Alertmanager's container, on its own port there; stderr joined to stdout
    and the exit status printed last (``pgmon-exit=N``), so that a refusal can be told to the user."""
    command = [
        "docker",
        "exec",
        container_name(settings.config.project, "alertmanager"),
        *amtool_command(),
        *args,
    ]
    return f"{shlex.join(command)} 2>&1; echo pgmon-exit=$?"


def silence_target(silence: Silence) -> tuple[str, str]:
    """The label a silence matches and its value: ``database`` (pgmon's name) or ``server`` (host:port)."""
    return (
        ("database", silence.database)
        if silence.database is not None
        else ("server", silence.server)
    )


def matcher_text(silence: Silence) -> str:
    name, value = silence_target(silence)
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def author() -> str:
    """Who silenced, as Alertmanager shows it: the controller's user and host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def add_command(settings: HostConfig, by: str) -> str:
    silence = settings.config.silence
    return amtool(
        settings,
        "silence",
        "add",
        f"--duration={silence.for_}",
        f"--comment={silence.reason}",
        f"--author={by}",
        matcher_text(silence),
    )


def list_command(settings: HostConfig) -> str:
    return amtool(settings, "--output=json", "silence", "query")


def end_command(settings: HostConfig) -> str:
    return amtool(settings, "silence", "expire", settings.config.silence.end)


def split_exit(lines: list[str]) -> tuple[int, list[str]]:
    """(amtool's exit status, its output lines) from what ``amtool()``'s command printed."""
    lines = [line for line in lines if line.strip()]
    if lines and (match := _EXIT_RE.match(lines[-1].strip())):
        return int(match.group(1)), lines[:-1]
    return 255, lines  # the shell itself did not get to the end


def parse_time(value: str) -> datetime:
    """Alertmanager's RFC 3339 times, whatever their fraction of a second."""
    match = _TIME_RE.match(value)
    if not match:
        raise ValueError(f"not a time: {value!r}")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + zone).astimezone(UTC)


def left(until: datetime, now: datetime) -> str:
    """Time left as people read it: '1h59m', '4m', 'under a minute'."""
    minutes = int((until - now).total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    return (
        "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n)
        or "0m"
    )


def listed_matcher(m: dict) -> str:
    """A matcher of a listed silence (amtool's JSON) as Alertmanager writes it: ``name=~"value"``."""
    equal = m.get("isEqual", True)
    operator = ("=~" if equal else "!~") if m.get("isRegex") else ("=" if equal else "!=")
    return f'{m["name"]}{operator}"{m["value"]}"'


def silence_lines(output: str, now: datetime) -> list[str]:
    """One line per active silence in ``amtool --output=json silence query``'s answer, the soonest to end first."""
    silences = [
        s for s in json.loads(output or "[]") if s.get("status", {}).get("state") == "active"
    ]
    if not silences:
        return ["no active silence"]
    lines = []
    for item in sorted(silences, key=lambda s: parse_time(s["endsAt"])):
        until = parse_time(item["endsAt"])
        matchers = ", ".join(listed_matcher(m) for m in item.get("matchers", []))
        lines.append(
            f"silence {item['id']}  {matchers}  until {until:%Y-%m-%d %H:%M} UTC ({left(until, now)} left)"
            f"  by {item.get('createdBy', '?')}: {' '.join(str(item.get('comment', '')).split())}"
        )
    return lines


def _refused(what: str, output: list[str], settings: HostConfig) -> list[str]:
    container = container_name(settings.config.project, "alertmanager")
    return [
        f"{what}: {' '.join(output)[-500:] or 'no answer'}",
        f"is pgmon deployed on this host and its Alertmanager running? docker ps --filter name={container}",
    ]


@operation(is_idempotent=False)
def add(settings: HostConfig):
    """
    Silence the database or server ``pgmon_silence`` names, for its ``for``, with its ``reason``.

    + settings: the validated pgmon settings, ``config.silence`` set with ``database`` or ``server``

    **Example:**

    .. code:: python

        add(name="Silence database shop for 2h", settings=settings)
    """
    if not host.state.is_executing:
        return
    silence = settings.config.silence
    status, output = split_exit(host_output(host, add_command(settings, author())))
    ids = [
        line.strip() for line in output if SILENCE_ID_RE.match(line.strip())
    ]  # amtool prints the new silence's id
    if status != 0 or not ids:
        yield failure(_refused(f"silence of {matcher_text(silence)} not added", output, settings))
        return
    host.log(
        f"pgmon: silence {ids[-1]} added: {matcher_text(silence)} for {silence.for_}: {silence.reason}"
    )


@operation(is_idempotent=False)
def end(settings: HostConfig):
    """
    End the silence whose id ``pgmon_silence.end`` gives, now: its alerts notify again.

    + settings: the validated pgmon settings, ``config.silence.end`` set

    **Example:**

    .. code:: python

        end(name="End silence 0a1b2c3d-...", settings=settings)
    """
    if not host.state.is_executing:
        return
    silence_id = settings.config.silence.end
    status, output = split_exit(host_output(host, end_command(settings)))
    if status != 0:
        if any("NotFound" in line for line in output):
            yield failure(
                [
                    f"no silence {silence_id} on this Alertmanager; silence.py without --data lists them"
                ]
            )
        else:
            yield failure(_refused(f"silence {silence_id} not ended", output, settings))
        return
    host.log(f"pgmon: silence {silence_id} ended")


@operation(is_idempotent=False)
def show(settings: HostConfig):
    """
    Print the active silences: id, what each matches, until when, who set it and why.

    + settings: the validated pgmon settings

    **Example:**

    .. code:: python

        show(name="List active silences", settings=settings)
    """
    if not host.state.is_executing:
        return
    status, output = split_exit(host_output(host, list_command(settings)))
    if status != 0:
        yield failure(_refused("cannot list the silences", output, settings))
        return
    log_lines(host, silence_lines("\n".join(output), datetime.now(UTC)))


@deploy("pgmon silences")
def manage_silences(settings: HostConfig):
    """Add or end the silence ``pgmon_silence`` describes, if any; then list the active silences."""
    silence = settings.config.silence
    acting = acting_member(
        settings.config.cluster, [h.name for h in host.inventory.get_active_hosts()]
    )
    if silence is not None and acting not in (None, host.name):
        host.log(
            f"pgmon: the silence is changed through {acting}; the HA group's Alertmanagers share it"
        )
    elif silence is not None and silence.end is not None:
        end(name=f"End silence {silence.end}", settings=settings)
    elif silence is not None:
        name, value = silence_target(silence)
        add(name=f"Silence {name} {value} for {silence.for_}", settings=settings)
    show(name="List active silences", settings=settings)


def manage_pgmon_silences() -> None:
    """silence.py: the current host's settings (``pgmon_silence`` from ``--data``), then ``manage_silences``."""
    manage_silences(load_config(host, "silence"))
