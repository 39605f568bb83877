"""Step 3: start the containers, recreating only what changed.

Each service carries a ``pgmon.revision`` label, a digest of its definition.
Containers whose revision matches and that are running are left alone, so an
unchanged re-run runs no command and adding a database starts one exporter.
When something must change, ``docker compose up`` does it (it recreates
exactly the services whose definition changed) and waits for health checks.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy, operation

from .host_state import Container, HostState
from .render import StackFiles
from .settings import Settings


@dataclass(frozen=True)
class ContainerPlan:
    start: tuple[str, ...]
    recreate: tuple[str, ...]
    restart: tuple[str, ...]  # present with the right revision but not running
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.start or self.recreate or self.restart or self.remove)

    def describe(self) -> list[str]:
        return (
            [f"start {s}" for s in self.start]
            + [f"recreate {s} (its definition changed)" for s in self.recreate]
            + [f"start stopped {s}" for s in self.restart]
            + [f"remove {s} (no longer configured)" for s in self.remove]
        )


def plan_containers(desired: dict[str, str], running: dict[str, Container]) -> ContainerPlan:
    """Compare wanted service revisions with the project's containers on the host."""
    return ContainerPlan(
        start=tuple(s for s in desired if s not in running),
        recreate=tuple(s for s in desired if s in running and running[s].revision != desired[s]),
        restart=tuple(
            s for s in desired if s in running and running[s].revision == desired[s] and running[s].state != "running"
        ),
        remove=tuple(s for s in running if s not in desired),
    )


@operation()
def compose_up(base_dir: str, desired: dict[str, str], running: dict[str, Container], wait_seconds: int):
    """
    Bring the Compose project in ``base_dir`` to the desired service revisions.

    + base_dir: directory holding docker-compose.yml
    + desired: service name -> revision label the rendered compose file sets
    + running: service name -> container found on the host
    + wait_seconds: how long ``--wait`` may take for health checks

    **Example:**

    .. code:: python

        compose_up(
            name="Start pgmon containers",
            base_dir="/opt/pgmon", desired={"prometheus": "ab12..."}, running={}, wait_seconds=180,
        )
    """
    plan = plan_containers(desired, running)
    if plan.empty:
        return
    if not host.state.is_executing:
        for line in plan.describe():
            host.log(f"pgmon: will {line}")
    yield (
        f"cd {shlex.quote(base_dir)} && "
        f"docker compose up --detach --remove-orphans --wait --wait-timeout {int(wait_seconds)}"
    )


@deploy("Start the pgmon stack")
def start_stack(settings: Settings, state: HostState, stack: StackFiles):
    """Start Prometheus, Alertmanager, Grafana and one postgres_exporter per database."""
    compose_up(
        name="Start pgmon containers",
        base_dir=settings.config.base_dir,
        desired=stack.service_revisions,
        running=state.containers,
        wait_seconds=settings.config.verify_timeout_seconds,
    )
