"""What is on the processing host now, read in one SSH round trip.

One shell command reports the Docker engine and Compose versions, the
containers of the pgmon project with their revisions, and every file under
base_dir with its mode, owner and sha256 (each of these a fact of
``host_facts``, ``HOST_FACTS`` below). Every later step decides from this
snapshot, so a no-change run costs one round trip however many databases
there are.

It runs with printing off whatever pyinfra's verbosity: the listing holds the
digests of secret files, which must not reach the output.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from pyinfra import logger

from .grafana_key import GRAFANA_VOLUME, GrafanaVolume
from .grafana_tls import CERTIFICATE_RENEWAL
from .host_facts import (
    COMPOSE_VERSION,
    CONTAINERS,
    DISCOVERED,
    DOCKER_INSTALLED,
    ENGINE_VERSION,
    ENTRIES,
    GRAFANA_ADMIN_USER,
    IMAGES,
    WRITTEN,
    Container,
    Entry,
    HostFact,
    facts_command,
    parse_facts,
)
from .isolation import ISOLATION
from .pyinfra_internals import run_unprinted
from .settings import DeployError, HostConfig, Settings


@dataclass(frozen=True)
class HostState:
    """The host as the facts of ``HOST_FACTS`` and ``LOCK_HOLDER`` found it; one field per fact."""

    engine_version: str | None  # None: no engine answering
    compose_version: str | None  # None: no `docker compose`
    docker_installed: bool
    containers: dict[str, Container] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)  # path relative to base_dir
    held_by: str | None = None  # another pgmon run changing this host now (tasks/host_lock.py)
    # What pgmon wrote under base_dir last time; None: no manifest.
    written: frozenset[str] | None = None
    grafana_admin_user: str | None = None  # the admin login the running Grafana was given
    # Grafana's data volume and the key check recorded in it; None: no volume (grafana_key).
    grafana_volume: GrafanaVolume | None = None
    # Grafana's self-signed certificate ends within 30 days (grafana_tls).
    grafana_certificate_renew: bool = False
    # What of the isolation unit and rule is in place (tasks/isolation.py).
    isolation: frozenset[str] = frozenset()
    images: frozenset[str] = (
        frozenset()
    )  # every name of every image on the host (host_facts.IMAGES)
    # The databases each discovered server's list on the host names now, by server entry (host_facts).
    discovered: dict[str, list[str]] = field(default_factory=dict)


# The SSH user's own directory (root's, under sudo), mode 0700, on a tmpfs: a reboot leaves no lock behind. Not
# /run/lock, where every local user may create files: a forged holder record there would refuse every run and
# steer a take-over's kill at any process.
LOCK_DIR = "/run/pgmon"


def lock_path() -> str:
    """The lock and its holder record: one per host. A run changes what pgmon's stacks there share (Docker, its
    apt sources, the isolation rules), and two base_dirs naming one Compose project drive the same containers:
    no finer key covers all that a run changes."""
    return f"{LOCK_DIR}/host"


def describe_holder(record: str) -> str:
    """``by=admin from=me@laptop pid=12 since=T dir=/opt/pgmon`` -> ``admin (SSH user) from me@laptop since T,
    for /opt/pgmon``."""
    fields = dict(re.findall(r"(\w+)=(\S*)", record))
    if "by" not in fields:
        return "a run that left no record"
    holder = (
        f"{fields['by']} (SSH user) from {fields.get('from', '?')} since {fields.get('since', '?')}"
    )
    return f"{holder}, for {fields['dir']}" if "dir" in fields else holder


def recorded_holder(lock: str) -> str:
    """Shell that sets ``pid`` to the PID the holder record of ``lock`` names, and succeeds only if that process
    has the lock open on fd 9, as a claim script holding it does: a record left by a run that died names no
    holder, even once its PID is another process's."""
    return (
        f"pid=$(sed -n 's/.* pid=\\([0-9]*\\) .*/\\1/p' {lock}.holder 2>/dev/null); "
        f'[ -n "$pid" ] && [ "$(readlink /proc/"$pid"/fd/9 2>/dev/null)" = {lock}.lock ]'
    )


def holder_check_command() -> str:
    """Prints ``held <record>`` while a run holds the host's lock. It reads the record and never tries the
    lock: a probe holding it for an instant (``flock -n``) would refuse a real run claiming in that instant."""
    lock = shlex.quote(lock_path())
    return f'if ( {recorded_holder(lock)} ); then echo "held $(cat {lock}.holder)"; fi'


# The lock probe: read with the host's state, not under the lock (host_lock's claim reads HOST_FACTS there).
LOCK_HOLDER = HostFact(
    "held_by",
    ("held",),
    lambda base_dir, project: holder_check_command(),
    lambda lines: describe_holder(lines[-1][1]) if lines else None,
)
HOST_FACTS: tuple[HostFact, ...] = (
    DOCKER_INSTALLED,
    ENGINE_VERSION,
    COMPOSE_VERSION,
    CONTAINERS,
    IMAGES,
    GRAFANA_ADMIN_USER,
    GRAFANA_VOLUME,
    ENTRIES,
    WRITTEN,
    CERTIFICATE_RENEWAL,
    ISOLATION,
    DISCOVERED,
)


def state_command(settings: Settings | HostConfig, facts: tuple[HostFact, ...] = HOST_FACTS) -> str:
    return facts_command(facts, settings.config.base_dir, settings.config.project)


def parse_state(lines: list[str]) -> HostState:
    return HostState(**parse_facts((*HOST_FACTS, LOCK_HOLDER), lines))


# A hung Docker daemon or SSH session must not hold a run without bound.
COMMAND_TIMEOUT_SECONDS = 120


def host_output(host, command: str, check: bool = True) -> list[str]:
    """Run ``command`` on ``host`` (with _sudo etc. from host data), unprinted; its stdout lines.

    With ``check`` a failing command raises DeployError; without, its output (none, if it timed out) is returned.
    """
    try:
        ok, output = run_unprinted(host, command, COMMAND_TIMEOUT_SECONDS)
    except TimeoutError:
        if check:
            raise DeployError(
                f"a command on {host.name} did not finish within {COMMAND_TIMEOUT_SECONDS}s "
                "(is the Docker daemon answering? `docker info` on the host)"
            ) from None
        return []
    if not ok and check:
        raise DeployError(
            f"a command failed on {host.name}: {' '.join(output.stderr_lines)[-500:]} "
            "(check SSH access and that the SSH user is root or has _sudo = True in group_data)"
        )
    return output.stdout_lines


def read_host_state(host, settings: Settings | HostConfig) -> HostState:
    """The host's state, in one round trip; a warning when another pgmon run is changing it right now."""
    state = parse_state(host_output(host, state_command(settings, (*HOST_FACTS, LOCK_HOLDER))))
    if state.held_by:
        host.log(
            f"pgmon: WARNING another pgmon run is changing {host.name} now: {state.held_by}; "
            "what this run shows may change under it, and it cannot apply until that run ends",
            log_func=logger.warning,
        )
    return state
