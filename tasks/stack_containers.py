"""Step 3: start the containers, recreating only what changed, then apply config changes.

Each service carries a ``pgmon.revision`` label, a digest of its definition.
Containers whose revision matches and that are running are left alone, so an
unchanged re-run runs no command and adding a database starts one exporter.
When something must change, ``docker compose up`` does it (it recreates
exactly the services whose definition changed). It does not wait for health
checks: step 4 checks each part directly, sooner and more precisely.
Then the running services whose files changed in step 2 are reloaded
(Prometheus, Alertmanager: SIGHUP), restarted (an exporter whose password
changed, Grafana after provisioning changes), or given the new Grafana admin
password (Grafana keeps the first one in its database).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FunctionCommand, deploy, operation

from .grafana_key import record_key_command, refuse_other_grafana_key
from .host_lock import claim_host
from .host_state import Container, HostState
from .isolation import isolate_containers
from .render.compose import grafana_scheme
from .settings import DeployError, HostConfig, Settings
from .stack_files import plan_files
from .stack_model import (
    GRAFANA_PORT,
    RELOAD_ALERTMANAGER,
    RELOAD_PROMETHEUS,
    RESET_GRAFANA_PASSWORD,
    RESTART_GRAFANA,
    StackFiles,
    action_service,
    compose_command,
    container_name,
    exporter_service,
    volume_owners_command,
)


@dataclass(frozen=True)
class ContainerPlan:
    start: tuple[str, ...]
    recreate: tuple[str, ...]
    start_stopped: tuple[str, ...]  # present with the right revision but not running
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.start or self.recreate or self.start_stopped or self.remove)

    def describe(self) -> list[str]:
        return (
            [f"start {s}" for s in self.start]
            + [f"recreate {s} (its definition changed)" for s in self.recreate]
            + [f"start stopped {s}" for s in self.start_stopped]
            + [f"remove {s} (no longer configured)" for s in self.remove]
        )


def plan_containers(desired: dict[str, str], running: dict[str, Container]) -> ContainerPlan:
    """Compare wanted service revisions with the project's containers on the host."""
    return ContainerPlan(
        start=tuple(s for s in desired if s not in running),
        recreate=tuple(s for s in desired if s in running and running[s].revision != desired[s]),
        start_stopped=tuple(
            s
            for s in desired
            if s in running and running[s].revision == desired[s] and running[s].state != "running"
        ),
        remove=tuple(s for s in running if s not in desired),
    )


def refuse_foreign_project(settings: Settings | HostConfig, state: HostState) -> None:
    """Refuse, before any change, a host where the Compose project has containers pgmon did not make (no
    ``pgmon.revision`` label): another Compose project of the same name, whose containers ``--remove-orphans``
    and ``down`` would remove and whose volumes would pass for pgmon's."""
    project = settings.config.project
    foreign = sorted(service for service, c in state.containers.items() if not c.revision)
    if foreign:
        raise DeployError(
            f"pgmon_project: {host.name} runs another Compose project named {project!r} (its services "
            f"{', '.join(foreign)} are not pgmon's), and nothing was changed. Set pgmon_project to a name no "
            "Compose project on the host has (docker compose ls -a lists them)"
        )


def action_command(action: str, project: str, base_dir: str, grafana_scheme: str = "http") -> str:
    """One shell line per action; each acts only on a running container (a stopped one reads its files at start)."""
    container = shlex.quote(container_name(project, action_service(action)))
    if action in (RELOAD_PROMETHEUS, RELOAD_ALERTMANAGER):
        # SIGHUP reloads config and rules without losing state or scrapes.
        command = f"docker kill -s HUP {container} >/dev/null"
    elif action == RESET_GRAFANA_PASSWORD:
        secret = shlex.quote(f"{base_dir}/grafana/secrets/admin_password")
        # A container started a moment ago may not have created its database (and admin) yet.
        # In the container, on its loopback (the certificate names the host, not 127.0.0.1): no secret is sent.
        insecure = " --no-check-certificate" if grafana_scheme == "https" else ""
        healthy = (
            f"i=0; until wget -q{insecure} -O /dev/null {grafana_scheme}://127.0.0.1:{GRAFANA_PORT}/api/health; "
            "do i=$((i+1)); [ $i -lt 120 ] || exit 1; sleep 0.5; done"
        )
        command = (
            f"docker exec {container} sh -c {shlex.quote(healthy)} && "
            f"docker exec -i {container} grafana cli --homepath /usr/share/grafana "
            f"admin reset-admin-password --password-from-stdin < {secret} >/dev/null"
        )
    else:
        command = f"docker restart {container} >/dev/null"
    running = (
        "docker container inspect -f '{{.State.Running}}' "
        + container
        + " 2>/dev/null | grep -qx true"
    )
    return f"if {running}; then {command}; fi"


@operation()
def compose_up(
    base_dir: str,
    project: str,
    desired: dict[str, str],
    running: dict[str, Container],
    after_file_changes: tuple[str, ...],
    claim: FunctionCommand | None = None,
    grafana_scheme: str = "http",
    hand_over_volumes: bool = False,
    record_grafana_key: bool = False,
):
    """
    Bring the Compose project in ``base_dir`` to the desired service revisions.

    + base_dir: directory holding docker-compose.yml
    + desired: service name -> revision label the rendered compose file sets
    + running: service name -> container found on the host
    + after_file_changes: actions (``reload:prometheus``, ``restart:exporter-x``...) the file step asks for
    + claim: run before any change, to fail changing nothing if another run holds the host (``host_lock.claim_host``)
    + grafana_scheme: ``https`` when Grafana serves TLS (its health is asked for before a password reset)
    + hand_over_volumes: give pgmon's data volumes to the uids their containers run as (the stack's project only)
    + record_grafana_key: record the secret_key check in Grafana's volume while it is new (``grafana_key``)

    **Example:**

    .. code:: python

        compose_up(
            name="Start pgmon containers",
            base_dir="/opt/pgmon", project="pgmon", desired={"prometheus": "ab12..."}, running={},
            after_file_changes=("reload:prometheus",),
        )
    """
    plan = plan_containers(desired, running)
    if not host.state.is_executing:
        for line in plan.describe() + [f"then {a.replace(':', ' ')}" for a in after_file_changes]:
            host.log(f"pgmon: will {line}")
    if claim is not None and (not plan.empty or after_file_changes):
        yield claim
    if not plan.empty:
        start = [compose_command(base_dir, project, "up --detach --remove-orphans")]
        if hand_over_volumes:
            # Containers and volumes made (a changed container stopped) before the volumes change hands, so
            # no process writes there as their old owner meanwhile; then started.
            start[:0] = [
                compose_command(base_dir, project, "up --no-start"),
                *([record_key_command(base_dir, project)] if record_grafana_key else []),
                volume_owners_command(project),
            ]
        yield " && ".join(start)
    if after_file_changes:
        yield " && ".join(
            action_command(a, project, base_dir, grafana_scheme) for a in after_file_changes
        )


@deploy("Start the pgmon stack")
def start_stack(settings: Settings, state: HostState, stack: StackFiles):
    """Start Prometheus, Alertmanager, Grafana and one postgres_exporter per database, behind the rule that keeps
    neighbours from routing to their containers."""
    refuse_foreign_project(settings, state)
    refuse_other_grafana_key(settings, state.grafana_volume)
    isolate_containers(
        name="Keep neighbours from routing to pgmon's containers",
        project=settings.config.project,
        members=None if settings.config.cluster is None else settings.config.cluster.addresses,
        found=state.isolation,
        claim=claim_host(settings, state),
    )
    compose_up(
        name="Start pgmon containers",
        base_dir=settings.config.base_dir,
        project=settings.config.project,
        desired=stack.service_revisions,
        running=state.containers,
        after_file_changes=after_file_changes(settings, state, stack),
        claim=claim_host(settings, state),
        grafana_scheme=grafana_scheme(settings),
        hand_over_volumes=True,
        record_grafana_key=settings.grafana_secret_key is not None,
    )


def after_file_changes(settings: Settings, state: HostState, stack: StackFiles) -> tuple[str, ...]:
    """What the file step asks for, and a Grafana restart when its self-signed certificate was made again.

    Step 2's plan is made again here, from the same stack and host state (``plan_files`` is a pure function
    of them), rather than passed: ``configure_stack`` and ``start_stack`` are steps a caller runs one by one."""
    actions = plan_files(stack, state.entries, state.written).actions
    renewed = (
        settings.config.grafana_https
        and settings.grafana_tls_certificate is None
        and state.grafana_certificate_renew
    )
    return actions + ((RESTART_GRAFANA,) if renewed and RESTART_GRAFANA not in actions else ())


def touched_databases(settings: Settings, state: HostState, stack: StackFiles) -> frozenset[str]:
    """The listed databases whose exporter this run starts, recreates or restarts: verification asks these live,
    and may trust Prometheus's last scrape of the others (``verify_databases.exporter_readings``)."""
    plan = plan_containers(stack.service_revisions, state.containers)
    services = {*plan.start, *plan.recreate, *plan.start_stopped} | {
        action_service(a) for a in after_file_changes(settings, state, stack)
    }
    return frozenset(db.name for db in settings.databases if exporter_service(db.name) in services)
