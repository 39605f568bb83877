"""One pgmon run at a time per host, and only on the host state its plan was made from.

pgmon plans every change from the state it read at the start (``host_state``). The first operation
that is about to change the stack claims the host: on a separate SSH channel
(``pyinfra_internals.start_process``), a shell on the host takes ``flock`` on
``/run/pgmon/host.lock`` (``/run/pgmon`` is the SSH user's alone, mode 0700; one lock per host,
``host_state.lock_path`` says why), re-reads the state under the lock and holds the lock until the
run ends: its hosts disconnect, or this pyinfra process goes away (the channel's stdin closes). So:

- a second run that wants to change the host while one is in progress stops before changing
  anything and names the holder (SSH user, controller, since when, its base_dir);
- a run whose host changed between its read and its claim stops with "the host changed since this
  run read it" and changes nothing;
- a run that dies releases the lock with its connection. A connection that hangs (a laptop asleep)
  keeps it: ``--data pgmon_take_over_lock=true`` ends that holder's shell (only a process that has the
  lock open: never whatever PID a record names) and takes over. Each later operation that changes the
  host first checks that its run still holds the lock, so a displaced run that wakes up fails there
  (a command it was running at the take-over runs to its end);
- ``--dry`` and no-change runs never claim, so they never block anyone; they warn when a run holds
  the host.
"""

from __future__ import annotations

import getpass
import posixpath
import re
import shlex
import socket
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import gevent
from pyinfra import logger
from pyinfra.api import BaseStateCallback, FunctionCommand, operation

from .host_state import (
    HostState,
    describe_holder,
    host_output,
    lock_path,
    parse_state,
    recorded_holder,
    state_command,
)
from .pyinfra_internals import HostProcess, start_process
from .reporting import log_failure
from .settings import HostConfig, Settings

if TYPE_CHECKING:
    from pyinfra.api import Host, State

CLAIM_TIMEOUT_SECONDS = 60
EXIT_HELD = 75


def claim_script(settings: Settings | HostConfig, controller: str, take_over: bool) -> str:
    """Shell that takes the lock, reports the state under it, then holds the lock until its stdin closes."""
    path = lock_path()
    lock, directory = shlex.quote(path), shlex.quote(posixpath.dirname(path))
    if take_over:
        # Ends the recorded holder only if it has this lock open.
        busy = (
            f'{{ {recorded_holder(lock)} && kill "$pid"; }} 2>/dev/null; '
            f'flock -w 10 9 || {{ echo "held $(cat {lock}.holder 2>/dev/null)"; exit {EXIT_HELD}; }}'
        )
    else:
        busy = f'echo "held $(cat {lock}.holder 2>/dev/null)"; exit {EXIT_HELD}'
    record = (
        f"by=${{SUDO_USER:-$(id -un)}} from={controller} pid=$$ "
        "since=$(date -u +%Y-%m-%dT%H:%M:%SZ) dir="
    )
    return "\n".join(
        [
            f"mkdir -p -m 0700 {directory} 2>/dev/null",
            # Nobody else may write the record or open the lock: the directory is this user's alone.
            f"[ -d {directory} ] && [ ! -L {directory} ] && "
            f'[ "$(stat -c %u:%a {directory})" = "$(id -u):700" ] || {{ echo "{directory} must be a '
            f'directory of $(id -un) alone (mode 0700, not a link)" >&2; exit 70; }}',
            f"exec 9>>{lock}.lock",
            f"flock -n 9 || {{ {busy}; }}",
            f'[ -s {lock}.holder ] && echo "stale $(cat {lock}.holder)"',
            f'echo "{record}"{shlex.quote(settings.config.base_dir)} > {lock}.holder',
            f"( {state_command(settings)} )",
            "echo claimed $$",
            # Until pyinfra closes the channel: at its exit, whatever the outcome. `cat` does not get the lock,
            # and the shell keeps it on fd 9 (a `cat 9>&-` would have the shell move it while cat runs).
            "( exec 9>&-; cat >/dev/null )",
            f"rm -f {lock}.holder",
        ]
    )


def state_key(state: HostState) -> tuple:
    """What a plan depends on: every file under base_dir and each service's revision (not its running state,
    which restart policies change on their own)."""
    return (state.entries, {service: c.revision for service, c in state.containers.items()})


@dataclass(frozen=True)
class Claim:
    """What the claim script said: ``held`` by another run, or the ``state`` under the lock and the ``pid`` of the
    shell holding it (and a ``stale`` record that a run which did not finish left)."""

    held: str | None
    stale: str | None
    state: HostState | None
    pid: str | None = None


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
        elif word == "claimed":
            return Claim(None, stale, parse_state(state_lines), rest)
        else:
            state_lines.append(line)
    return Claim(held, stale, None)


class _Hold(NamedTuple):
    process: HostProcess  # the claim script, holding the lock until its stdin closes
    pid: str  # its PID on the host, which the holder record names


# What holds each host's lock, for as long as that Host, the host of one run, is connected.
_held: weakref.WeakKeyDictionary[Host, _Hold] = weakref.WeakKeyDictionary()
_releasing: weakref.WeakSet[State] = weakref.WeakSet()  # runs whose disconnect releases their locks


class _ReleaseAtDisconnect(BaseStateCallback):
    """The end of a run releases its locks, so that another run in the same Python process (pgmon as a
    library) claims the host again rather than wait for this one's connection to be collected."""

    @staticmethod
    def host_disconnect(state, host) -> None:
        hold = _held.pop(host, None)
        if hold is not None:
            hold.process.close()


def _open(host, script: str) -> HostProcess:
    """Start ``script`` on the host (sudo etc. as for any command); its stdin stays open until released."""
    return start_process(host, script, "pgmon's lock", timeout=CLAIM_TIMEOUT_SECONDS)


def _hold(host, hold: _Hold) -> None:
    _held[host] = hold
    if host.state not in _releasing:
        host.state.add_callback_handler(_ReleaseAtDisconnect())
        _releasing.add(host.state)


def _answer(process: HostProcess) -> Claim | str:
    """What the claim script said, or why it said nothing usable."""
    try:
        with gevent.Timeout(CLAIM_TIMEOUT_SECONDS):
            claim = read_claim(process.lines())
            if claim.held is not None or claim.state is not None:
                return claim
            # It ended without either (the lock could not be opened, say): its own message says why.
            status, errors = process.wait()
    except (gevent.Timeout, OSError) as error:
        return f"{error or 'timed out'}"
    last = errors.strip().splitlines()[-1:] or ["no message"]
    return f"the lock script ended with status {status}: {last[0][-300:]}"


def _still_held(host, pid: str) -> bool:
    """Whether the claim script of this run (``pid``) still holds the host's lock; a take-over ends it, and
    a run that goes on without the lock fails here, at its next operation that changes the host."""
    lock = shlex.quote(lock_path())
    check = f'( {recorded_holder(lock)} && [ "$pid" = {shlex.quote(pid)} ] ) && echo held'
    if host_output(host, check, check=False) == ["held"]:
        return True
    return log_failure(
        host,
        [
            f"this run no longer holds the lock of {host.name}: another run took it over "
            "(pgmon_take_over_lock), or its holder ended. It stopped before this operation; what it "
            "changed before stays. Run it again to plan from the host as it is now.",
        ],
    )


def _claim(
    state, host, settings: Settings | HostConfig, planned_from: HostState, take_over: bool
) -> bool:
    if host in _held:  # claimed by an earlier operation of this run
        return _still_held(host, _held[host].pid)
    controller = re.sub(r"[^A-Za-z0-9@._-]", "_", f"{getpass.getuser()}@{socket.gethostname()}")
    process = _open(host, claim_script(settings, controller, take_over))
    claim = _answer(process)
    if isinstance(claim, str):
        process.close()
        return log_failure(
            host,
            [
                f"could not claim {settings.config.base_dir} on the host ({claim}); nothing was changed. "
                "Run again; if this repeats, fix what the message names."
            ],
        )
    if claim.held is not None:
        process.close()
        return log_failure(
            host,
            [
                f"another pgmon run is changing {host.name}: {claim.held}. This run changed nothing.",
                "Wait for it to finish, then run again (your run then applies on top of it). If no run is in "
                "progress (a connection that hung), take over: --data pgmon_take_over_lock=true",
            ],
        )
    if state_key(claim.state) != state_key(planned_from):
        process.close()
        return log_failure(
            host,
            [
                f"the host changed since this run read it ({settings.config.base_dir} on {host.name}): another pgmon run, or a hand edit, changed the "
                "stack in between. This run changed nothing; run it again to plan from the host as it is now.",
            ],
        )
    if claim.stale:
        logger.warning(
            f"{host.print_prefix}pgmon: took over from a run that did not finish: {claim.stale}"
        )
    _hold(host, _Hold(process, claim.pid))
    return True


def claim_host(settings: Settings | HostConfig, planned_from: HostState) -> FunctionCommand:
    """The first command of an operation that changes the stack: claim the host, or fail changing nothing.

    Example:

    .. code:: python

        yield claim_host(settings, state)
        yield StringCommand("docker compose up ...")
    """
    return FunctionCommand(_claim, (settings, planned_from, settings.config.take_over_lock), {})


@operation(is_idempotent=False)
def claim_before_changes(claim: FunctionCommand):
    """
    Claim the host before steps made of pyinfra's own operations, which take no ``claim`` (installing Docker).

    + claim: ``claim_host(settings, state)``
    """
    yield claim
