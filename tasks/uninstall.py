"""Remove pgmon from the processing host: ``pyinfra inventory.py uninstall.py`` (README, "Removing pgmon").

Same inventory and group_data as the deploy; no secret is read. A host where another Compose project has
``pgmon_project``'s name (containers of it without pgmon's revision label) is refused, changing nothing. Four
named operations, each changing only what is there and pgmon made:

- ``Stop and remove pgmon containers``: the Compose project's containers and networks;
- ``Remove pgmon data volumes``: its three volumes (not others with the project's label), only with
  ``pgmon_uninstall_delete_data = True`` (``--data pgmon_uninstall_delete_data=true``); otherwise Prometheus's history, Grafana's and Alertmanager's data stay
  in their volumes, and a later deploy (same ``pgmon_project``) finds them again;
- ``Remove pgmon's isolation rule``: the systemd unit holding the DOCKER-USER rules, its timer and the rules
  (tasks/isolation.py);
- ``Remove pgmon files``: every path pgmon wrote under ``base_dir`` (its manifest) and the self-signed certificate
  it made; a file someone else put there stays, and with it its folders.

Docker itself and the images stay (``docker image prune -a`` removes unused images).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from pyinfra import host
from pyinfra.api import FunctionCommand, deploy, operation

from .host_lock import claim_host
from .host_state import HostState, host_output, read_host_state
from .isolation import removal_command, timer_name, unit_name
from .settings import HostConfig
from .stack_containers import refuse_foreign_project
from .stack_model import (
    DATA_VOLUMES,
    GRAFANA_SELF_SIGNED_CERT,
    GRAFANA_SELF_SIGNED_KEY,
    GRAFANA_TLS_DIR,
    MANIFEST,
    STAGE_PREFIX,
    compose_command,
    volume_name,
)


def leftovers_command(project: str) -> str:
    """The project's networks and volumes on the host, one ``network NAME`` / ``volume NAME`` line each."""
    label = shlex.quote(f"label=com.docker.compose.project={project}")
    return (
        f"if command -v docker >/dev/null 2>&1; then "
        f"docker network ls --filter {label} --format 'network {{{{.Name}}}}' 2>/dev/null; "
        f"docker volume ls --filter {label} --format 'volume {{{{.Name}}}}' 2>/dev/null; fi; true"
    )


def leftovers(current_host, project: str, volumes: Iterable[str]) -> tuple[list[str], list[str]]:
    """The project's networks on the host, and which of the volumes pgmon's compose file declares
    (``volumes``) are there: a volume another Compose project of the same name made is not pgmon's."""
    found = [line.partition(" ") for line in host_output(current_host, leftovers_command(project))]
    ours = {volume_name(project, volume) for volume in volumes}
    return (
        [name for kind, _, name in found if kind == "network"],
        [name for kind, _, name in found if kind == "volume" and name in ours],
    )


def pgmon_paths(state: HostState) -> list[str]:
    """What pgmon put under base_dir and is there now: its manifest's paths, the self-signed certificate it made,
    a staging folder an interrupted run left."""
    made = {
        f"{GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_CERT}",
        f"{GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_KEY}",
        MANIFEST,
    }
    ours = set(state.written or ()) | made
    return sorted(
        path
        for path in state.entries
        if path != "." and (path in ours or path.split("/")[0].startswith(STAGE_PREFIX))
    )


def remove_files_script(base_dir: str, paths: list[str], entries: dict) -> str:
    """Files first, then each folder (deepest first) if nothing else is left in it, then base_dir if empty."""
    base = base_dir.rstrip("/")
    files = [p for p in paths if entries[p].kind != "d" or p.split("/")[0].startswith(STAGE_PREFIX)]
    folders = sorted((p for p in paths if p not in files), key=lambda p: -p.count("/"))
    steps = [f"rm -rf -- {' '.join(shlex.quote(f'{base}/{p}') for p in files)}"] if files else []
    steps += [f"rmdir --ignore-fail-on-non-empty -- {shlex.quote(f'{base}/{p}')}" for p in folders]
    steps.append(f"rmdir --ignore-fail-on-non-empty -- {shlex.quote(base)}")
    return " && ".join(steps)


@operation()
def remove_containers(
    base_dir: str,
    project: str,
    containers: list[str],
    networks: list[str],
    compose_file: bool,
    claim: FunctionCommand | None = None,
):
    """
    Stop and remove the Compose project's containers and networks (volumes stay).

    + base_dir: where docker-compose.yml is (used when it is still there)
    + project: the Compose project
    + containers, networks: what the host has of the project now
    + compose_file: whether base_dir still holds pgmon's docker-compose.yml
    """
    if not (containers or networks):
        return
    if not host.state.is_executing:
        host.log(
            f"pgmon: will remove {len(containers)} container(s) and the networks of project {project}: "
            f"{', '.join(sorted(containers + networks))}"
        )
    if claim is not None:
        yield claim
    if compose_file:
        yield compose_command(base_dir, project, "down --remove-orphans --timeout 30")
    else:
        yield compose_command(None, project, "down --remove-orphans --timeout 30")


@operation()
def remove_volumes(volumes: list[str], delete: bool, claim: FunctionCommand | None = None):
    """
    Delete the project's data volumes, only when asked (``pgmon_uninstall_delete_data``).

    + volumes: the project's volumes on the host now
    + delete: the setting
    """
    if not volumes:
        return
    if not delete:
        host.log(
            f"pgmon: {'kept' if host.state.is_executing else 'will keep'} the data volumes {', '.join(volumes)} "
            "(Prometheus's history, Grafana's and Alertmanager's data): a deploy with the same pgmon_project uses "
            "them again; --data pgmon_uninstall_delete_data=true deletes them"
        )
        return
    if not host.state.is_executing:
        host.log(f"pgmon: will delete the data volumes {', '.join(volumes)}")
    if claim is not None:
        yield claim
    yield f"docker volume rm {' '.join(shlex.quote(v) for v in volumes)} >/dev/null"


@operation()
def remove_isolation(project: str, found: frozenset[str], claim: FunctionCommand | None = None):
    """
    Stop, disable and remove the unit that held the DOCKER-USER rules and its timer (tasks/isolation.py); the
    rules go with them.

    + project: the Compose project
    + found: ``HostState.isolation``
    """
    if not any(word.startswith(("unit ", "timer ")) for word in found):
        return
    if not host.state.is_executing:
        host.log(f"pgmon: will remove {unit_name(project)}, {timer_name(project)} and their rules")
    if claim is not None:
        yield claim
    yield removal_command(project)


@operation()
def remove_files(base_dir: str, state: HostState, claim: FunctionCommand | None = None):
    """
    Remove what pgmon wrote under base_dir; anything else there stays.

    + base_dir: the stack's directory
    + state: the host as read at the start (``read_host_state``)
    """
    paths = pgmon_paths(state)
    others = sorted(
        p
        for p in state.entries
        if p != "."
        and p not in paths
        and not any(p.startswith(q + "/") for q in paths if state.entries[q].kind != "d")
    )
    if not paths:
        return
    if not host.state.is_executing:
        host.log(f"pgmon: will remove the {len(paths)} paths it wrote under {base_dir}")
        if others:
            host.log(
                f"pgmon: keeps what it did not write under {base_dir}: {', '.join(others[:10])}"
                + (" ..." if len(others) > 10 else "")
            )
    if claim is not None:
        yield claim
    yield remove_files_script(base_dir, paths, state.entries)


@deploy("Uninstall pgmon")
def uninstall_stack(host_config: HostConfig, volumes: Iterable[str] = DATA_VOLUMES.values()):
    """Stop and remove pgmon's containers, networks and files; its data volumes (those its compose file
    declares: ``volumes``) only when asked. Refused where another Compose project has the project's name."""
    cfg = host_config.config
    state = read_host_state(host, host_config)
    refuse_foreign_project(host_config, state)
    networks, volumes = leftovers(host, cfg.project, volumes)
    claim = claim_host(host_config, state)
    remove_containers(
        name="Stop and remove pgmon containers",
        base_dir=cfg.base_dir,
        project=cfg.project,
        containers=sorted(state.containers),
        networks=networks,
        compose_file="docker-compose.yml" in state.entries,
        claim=claim,
    )
    remove_volumes(
        name="Remove pgmon data volumes",
        volumes=volumes,
        delete=cfg.uninstall_delete_data,
        claim=claim,
    )
    remove_isolation(
        name="Remove pgmon's isolation rule",
        project=cfg.project,
        found=state.isolation,
        claim=claim,
    )
    remove_files(name="Remove pgmon files", base_dir=cfg.base_dir, state=state, claim=claim)
