"""What is on the processing host now, read in one SSH round trip.

One shell command reports the Docker engine and Compose versions, the
containers of the pgmon project with their revisions, and every file under
base_dir with its mode, owner and sha256. Every later step decides from this
snapshot, so a no-change run costs one round trip however many databases
there are.

It runs with printing off whatever pyinfra's verbosity: the listing holds the
digests of secret files, which must not reach the output.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field

from pyinfra import logger
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

from .grafana_tls import renewal_check_command
from .isolation import state_lines as isolation_state_lines
from .settings import DeployError, Settings
from .stack_model import MANIFEST, container_name


@dataclass(frozen=True)
class Entry:
    kind: str  # "f" or "d"
    mode: int
    uid: int
    gid: int
    sha256: str | None = None


@dataclass(frozen=True)
class Container:
    revision: str
    state: str  # docker's: running, exited, restarting, ...


@dataclass(frozen=True)
class HostState:
    engine_version: str | None  # None: no engine answering
    compose_version: str | None  # None: no `docker compose`
    docker_installed: bool
    containers: dict[str, Container] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)  # path relative to base_dir
    held_by: str | None = None  # another pgmon run changing this base_dir now (tasks/host_lock.py)
    written: frozenset[str] | None = (
        None  # what pgmon wrote under base_dir last time; None: no manifest
    )
    grafana_admin_user: str | None = None  # the admin login the running Grafana was given
    grafana_certificate_renew: bool = (
        False  # Grafana's self-signed certificate ends within 30 days (grafana_tls)
    )
    isolation: frozenset[str] = (
        frozenset()
    )  # what of the isolation unit and rule is in place (tasks/isolation.py)


LOCK_DIR = "/run/lock"  # a tmpfs: a reboot leaves no lock behind


def lock_path(base_dir: str) -> str:
    """The lock and holder record of a base_dir (two stacks with their own base_dir do not block each other)."""
    return f"{LOCK_DIR}/pgmon-{hashlib.sha256(base_dir.encode()).hexdigest()[:16]}"


def describe_holder(record: str) -> str:
    """``by=admin from=me@laptop pid=12 since=T`` -> ``admin (SSH user) from me@laptop since T``."""
    fields = dict(re.findall(r"(\w+)=(\S*)", record))
    if "by" not in fields:
        return "a run that left no record"
    return (
        f"{fields['by']} (SSH user) from {fields.get('from', '?')} since {fields.get('since', '?')}"
    )


def holder_check_command(base_dir: str) -> str:
    """Prints ``held <record>`` while a run holds base_dir's lock; takes no lock itself."""
    lock = shlex.quote(lock_path(base_dir))
    return (
        f"if [ -e {lock}.lock ] && ! flock -n {lock}.lock true 2>/dev/null; "
        f'then echo "held $(cat {lock}.holder 2>/dev/null)"; fi'
    )


def state_command(settings: Settings) -> str:
    base = shlex.quote(settings.config.base_dir)
    project = shlex.quote(f"label=com.docker.compose.project={settings.config.project}")
    fmt = shlex.quote(
        'container {{.Label "com.docker.compose.service"}} {{.Label "pgmon.revision"}} {{.State}}'
    )
    return "\n".join(
        [
            "if command -v docker >/dev/null 2>&1; then",
            "  echo docker-installed",
            "  echo \"engine $(docker version --format '{{.Server.Version}}' 2>/dev/null)\"",
            '  echo "compose $(docker compose version --short 2>/dev/null)"',
            f"  docker ps -a --filter {project} --format {fmt} 2>/dev/null",
            f"  docker inspect -f {shlex.quote('{{range .Config.Env}}{{println .}}{{end}}')} "
            f"{shlex.quote(container_name(settings.config.project, 'grafana'))} 2>/dev/null"
            " | sed -n 's/^GF_SECURITY_ADMIN_USER=/grafana-admin /p'",
            "fi",
            f"if [ -d {base} ]; then cd {base} &&",
            # Names with control characters (a newline) are left out: pgmon writes none and touches none.
            "  find . -path '*[[:cntrl:]]*' -prune -o -printf 'entry %y %m %U %G %p\\n' &&",
            "  find . -path '*[[:cntrl:]]*' -prune -o -type f -exec sha256sum {} + | sed 's/^/sum /' &&",
            f"  {{ [ ! -f {MANIFEST} ] || sed 's/^/written /' {MANIFEST}; }}",
            "fi",
            renewal_check_command(settings.config.base_dir),
            *isolation_state_lines(settings.config.project),
            "true",
        ]
    )


def _relative(find_path: str) -> str:
    return "." if find_path == "." else find_path.removeprefix("./")


def parse_state(lines: list[str]) -> HostState:
    engine = compose = None
    installed = False
    containers: dict[str, Container] = {}
    entries: dict[str, Entry] = {}
    sums: dict[str, str] = {}
    held_by = None
    written: set[str] | None = None
    grafana_admin = None
    renew = False
    isolation: set[str] = set()
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "docker-installed":
            installed = True
        elif word == "engine":
            engine = rest.strip() or None
        elif word == "compose":
            compose = rest.strip() or None
        elif word == "container":
            parts = rest.split(" ")
            if len(parts) == 3:
                service, revision, state = parts
                containers[service] = Container(revision, state)
        elif word == "entry":
            kind, mode, uid, gid, path = rest.split(" ", 4)
            entries[_relative(path)] = Entry(kind, int(mode, 8), int(uid), int(gid))
        elif word == "grafana-admin":
            grafana_admin = rest
        elif word == "written":
            written = (written or set()) | {rest}
        elif word == "held":
            held_by = describe_holder(rest)
        elif line == "grafana-certificate renew":
            renew = True
        elif word == "isolation":
            isolation.add(rest)
        elif word == "sum":
            digest, _, path = rest.partition("  ")
            sums[_relative(path)] = digest
    for path, digest in sums.items():
        if path in entries:
            e = entries[path]
            entries[path] = Entry(e.kind, e.mode, e.uid, e.gid, digest)
    return HostState(
        engine,
        compose,
        installed,
        containers,
        entries,
        held_by,
        None if written is None else frozenset(written),
        grafana_admin,
        renew,
        frozenset(isolation),
    )


COMMAND_TIMEOUT_SECONDS = (
    120  # a hung Docker daemon or SSH session must not hold a run without bound
)


def host_output(host, command: str, check: bool = True) -> list[str]:
    """Run ``command`` on ``host`` (with _sudo etc. from host data), unprinted; its stdout lines.

    With ``check`` a failing command raises DeployError; without, its output (none, if it timed out) is returned.
    """
    arguments, _ = pop_global_arguments(host.state, host, {})
    connector_arguments = {k: arguments[k] for k in CONNECTOR_ARGUMENT_KEYS if k in arguments}
    connector_arguments["_timeout"] = COMMAND_TIMEOUT_SECONDS
    try:
        ok, output = host.run_shell_command(
            command, print_output=False, print_input=False, **connector_arguments
        )
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


def read_host_state(host, settings: Settings) -> HostState:
    """The host's state, in one round trip; a warning when another pgmon run is changing it right now."""
    state = parse_state(
        host_output(
            host, state_command(settings) + "\n" + holder_check_command(settings.config.base_dir)
        )
    )
    if state.held_by:
        host.log(
            f"pgmon: WARNING another pgmon run is changing {settings.config.base_dir} now: {state.held_by}; "
            "what this run shows may change under it, and it cannot apply until that run ends",
            log_func=logger.warning,
        )
    return state
