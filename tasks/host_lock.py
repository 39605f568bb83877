"""One pgmon run at a time per host and base_dir, and only on the host state its plan was made from.

pgmon plans every change from the state it read at the start (``host_state``). The first operation
that is about to change the stack claims the host: on a separate SSH channel, a shell on the host
takes ``flock`` on ``/run/lock/pgmon-<base_dir digest>.lock``, re-reads the state under the lock
and holds the lock until this pyinfra process goes away (the channel's stdin closes). So:

- a second run that wants to change the host while one is in progress stops before changing
  anything and names the holder (SSH user, controller, since when);
- a run whose host changed between its read and its claim stops with "the host changed since this
  run read it" and changes nothing;
- a run that dies releases the lock with its connection. A connection that hangs (a laptop asleep)
  keeps it: ``--data pgmon_take_over_lock=true`` ends that holder's shell and takes over;
- ``--dry`` and no-change runs never claim, so they never block anyone; they warn when a run holds
  the host.
"""

from __future__ import annotations

import getpass
import re
import shlex
import socket
from dataclasses import dataclass

import gevent
from gevent.subprocess import PIPE, Popen
from pyinfra import logger
from pyinfra.api import FunctionCommand, StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.connectors.local import LocalConnector
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.connectors.util import make_unix_command_for_host

from .host_state import (
    LOCK_DIR,
    HostState,
    describe_holder,
    lock_path,
    parse_state,
    state_command,
)
from .reporting import log_failure
from .settings import Settings

CLAIM_TIMEOUT_SECONDS = 60
EXIT_HELD = 75


def claim_script(settings: Settings, controller: str, take_over: bool) -> str:
    """Shell that takes the lock, reports the state under it, then holds the lock until its stdin closes."""
    lock = shlex.quote(lock_path(settings.config.base_dir))
    if take_over:
        # The holder record names the holding shell; ending it releases the lock (its `cat` does not hold it).
        busy = (
            f"pid=$(sed -n 's/.* pid=\\([0-9]*\\) .*/\\1/p' {lock}.holder 2>/dev/null); "
            f'[ -n "$pid" ] && kill "$pid" 2>/dev/null; '
            f'flock -w 10 9 || {{ echo "held $(cat {lock}.holder 2>/dev/null)"; exit {EXIT_HELD}; }}'
        )
    else:
        busy = f'echo "held $(cat {lock}.holder 2>/dev/null)"; exit {EXIT_HELD}'
    record = (
        f"by=${{SUDO_USER:-$(id -un)}} from={controller} pid=$$ "
        "since=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    )
    return "\n".join(
        [
            f"mkdir -p {LOCK_DIR} && exec 9>>{lock}.lock || exit 70",
            f"flock -n 9 || {{ {busy}; }}",
            f'[ -s {lock}.holder ] && echo "stale $(cat {lock}.holder)"',
            f'echo "{record}" > {lock}.holder',
            f"( {state_command(settings)} )",
            "echo claimed",
            "cat 9>&- >/dev/null",  # until pyinfra closes the channel: at its exit, whatever the outcome
            f"rm -f {lock}.holder",
        ]
    )


def state_key(state: HostState) -> tuple:
    """What a plan depends on: every file under base_dir and each service's revision (not its running state,
    which restart policies change on their own)."""
    return (state.entries, {service: c.revision for service, c in state.containers.items()})


@dataclass(frozen=True)
class Claim:
    """What the claim script said: ``held`` by another run, or the ``state`` under the lock (and a ``stale``
    record that a run which did not finish left)."""

    held: str | None
    stale: str | None
    state: HostState | None


def read_claim(lines) -> Claim:
    held = stale = None
    state_lines = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "held":
            held = describe_holder(rest)
            break
        if word == "stale":
            stale = describe_holder(rest)
        elif line == "claimed":
            return Claim(None, stale, parse_state(state_lines))
        else:
            state_lines.append(line)
    return Claim(held, stale, None)


_held: dict[str, object] = {}  # host name -> the open channel or process that holds its lock


def _open(host, script: str):
    """Start ``script`` on the host (sudo etc. as for any command); return (lines iterator, keeper)."""
    arguments, _ = pop_global_arguments(host.state, host, {})
    # What the connectors themselves handle, not the command line (sudo, su, env, shell do).
    handled_by_connector = ("_get_pty", "_timeout", "_stdin", "_success_exit_codes")
    connector_arguments = {
        k: arguments[k]
        for k in CONNECTOR_ARGUMENT_KEYS
        if k in arguments and k not in handled_by_connector
    }
    command = make_unix_command_for_host(
        host.state, host, StringCommand(script), **connector_arguments
    )
    if isinstance(host.connector, SSHConnector):
        stdin, stdout, _ = host.connector.client.exec_command(command.get_raw_value())
        stdout.channel.settimeout(CLAIM_TIMEOUT_SECONDS)
        # Kept with the channel: paramiko closes a collected stdin file, which would end the claim at once.
        return (line.rstrip("\n") for line in stdout), (stdout.channel, stdin)
    if isinstance(host.connector, LocalConnector):
        process = Popen(command.get_raw_value(), shell=True, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        return (line.decode().rstrip("\n") for line in process.stdout), process
    raise RuntimeError(f"{host.name}: pgmon needs the ssh or local connector")


def _release(keeper) -> None:
    if isinstance(keeper, Popen):
        keeper.stdin.close()
    else:
        keeper[0].close()


def _claim(state, host, settings: Settings, planned_from: HostState, take_over: bool) -> bool:
    if host.name in _held:
        return True  # claimed by an earlier operation of this run
    controller = re.sub(r"[^A-Za-z0-9@._-]", "_", f"{getpass.getuser()}@{socket.gethostname()}")
    lines, keeper = _open(host, claim_script(settings, controller, take_over))
    try:
        with gevent.Timeout(CLAIM_TIMEOUT_SECONDS):
            claim = read_claim(lines)
    except (gevent.Timeout, OSError) as error:
        _release(keeper)
        return log_failure(
            host,
            [
                f"could not claim {settings.config.base_dir} on the host ({error or 'timed out'}); "
                "nothing was changed. Run again."
            ],
        )
    where = f"{settings.config.base_dir} on {host.name}"
    if claim.held is not None:
        _release(keeper)
        return log_failure(
            host,
            [
                f"another pgmon run is changing {where}: {claim.held}. This run changed nothing.",
                "Wait for it to finish, then run again (your run then applies on top of it). If no run is in "
                "progress (a connection that hung), take over: --data pgmon_take_over_lock=true",
            ],
        )
    if state_key(claim.state) != state_key(planned_from):
        _release(keeper)
        return log_failure(
            host,
            [
                f"the host changed since this run read it ({where}): another pgmon run, or a hand edit, changed the "
                "stack in between. This run changed nothing; run it again to plan from the host as it is now.",
            ],
        )
    if claim.stale:
        logger.warning(
            f"{host.print_prefix}pgmon: took over from a run that did not finish: {claim.stale}"
        )
    _held[host.name] = keeper
    return True


def claim_host(settings: Settings, planned_from: HostState) -> FunctionCommand:
    """The first command of an operation that changes the stack: claim the host, or fail changing nothing.

    Example:

    .. code:: python

        yield claim_host(settings, state)
        yield StringCommand("docker compose up ...")
    """
    return FunctionCommand(_claim, (settings, planned_from, settings.config.take_over_lock), {})
