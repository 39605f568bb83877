"""The demo's operations and its two entry points: deploy_demo (demo.py) and uninstall_demo (uninstall.py)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy, operation

from ..dashboard import load_dashboard_9628
from ..docker_engine import install_docker
from ..host_lock import claim_host
from ..host_state import Container, read_host_state
from ..render import render_stack
from ..settings import DeployError, Settings
from ..stack_containers import compose_up, start_stack
from ..stack_files import configure_stack, sync_stack_files
from ..uninstall import uninstall_stack
from ..verify_stack import verify_stack
from .config import (
    BASE_DIR,
    EXTRAS_DIR,
    EXTRAS_PROJECT,
    GRAFANA_PASSWORD,
    GRAFANA_PORT,
    INCIDENTS,
    POSTGRES,
    POSTGRES_VOLUME,
    PROJECT,
    SECRETS_DIR,
    SINK_PORT,
    demo_address,
    demo_images,
    demo_settings,
    project_config,
    read_demo_secrets,
)
from .extras import render_extras


def demo_summary(address: str, local: bool) -> list[str]:
    """Where Grafana and the sink are, and how to log in (the password is read on the host, never shown)."""
    sink = f"http://127.0.0.1:{SINK_PORT}/"
    reach_sink = (
        sink
        if local
        else f"{sink} on the host (from here: ssh -L {SINK_PORT}:127.0.0.1:{SINK_PORT} {address}, then {sink})"
    )
    return [
        f"Grafana     https://{address}:{GRAFANA_PORT}/ (self-signed certificate), user admin",
        f"password    on the host: sudo cat {EXTRAS_DIR}/{SECRETS_DIR}/{GRAFANA_PASSWORD}",
        f"alert sink  {reach_sink}",
        "incident    pyinfra -y inventory.py demo.py --data pgmon_demo_incident=start (then =end)",
        "remove it   pyinfra -y inventory.py uninstall.py",
    ]


@operation()
def show_demo(address: str, local: bool):
    """
    Print where the demo's Grafana and alert sink are and how to log in; changes nothing.

    + address: the host's name as people reach it
    + local: the demo runs on this machine (@local)

    **Example:**

    .. code:: python

        show_demo(name="Show the pgmon demo", address="monitor.example.com", local=False)
    """
    if host.state.is_executing:  # last, after verification has printed its summary
        for line in demo_summary(address, local):
            host.log(f"pgmon demo: {line}")
    yield from ()  # no command: the run counts no change for it


@operation()
def demo_incident(action: str, postgres: Container):
    """
    Cause the demo's incident (``start``: its PostgreSQL stopped, so PostgresDown fires) or end it (``end``).

    + action: ``start`` or ``end``
    + postgres: the demo database's container as the host state found it

    **Example:**

    .. code:: python

        demo_incident(name="Cause an incident in the demo", action="start", postgres=state.containers["postgres"])
    """
    running = postgres.state == "running"
    if (action == "start") != running:
        return
    verb = "stop" if running else "start"
    if not host.state.is_executing:
        host.log(f"pgmon demo: will {verb} {POSTGRES}")
    yield f"docker {verb} {POSTGRES} >/dev/null"
    if not host.state.is_executing:
        return
    if action == "start":
        host.log(
            f"pgmon demo: {POSTGRES} stopped; PostgresDown reaches the alert sink within about a minute "
            f"(http://127.0.0.1:{SINK_PORT}/ on the host). End it: --data pgmon_demo_incident=end"
        )
    else:
        host.log(
            f"pgmon demo: {POSTGRES} started; the alert resolves in the sink within about a minute"
        )


def deploy_demo() -> Settings | None:
    """Deploy the demo to the current host (or, with ``pgmon_demo_incident``, start or end its incident).

    Every secret is drawn on the host and read back unprinted, then the stack is deployed as
    ``deploy_pgmon`` does it, with the extras written and started beside it, verified, and the address
    and login printed. Returns the stack's settings (None for an incident run).
    """
    host_data = host.data.dict()
    incident = host_data.get("pgmon_demo_incident")
    if incident is not None and incident not in INCIDENTS:
        raise DeployError(
            f"pgmon_demo_incident: {incident!r} is not an incident action; give start or end"
        )
    extras = project_config(EXTRAS_PROJECT, EXTRAS_DIR, host_data)
    extras_state = read_host_state(host, extras)
    if incident is not None:
        if "postgres" not in extras_state.containers:
            raise DeployError(
                "pgmon demo: the demo is not deployed on this host; run pyinfra -y inventory.py demo.py first"
            )
        demo_incident(
            name=f"{'Cause' if incident == 'start' else 'End'} the demo's incident",
            action=incident,
            postgres=extras_state.containers["postgres"],
        )
        return None

    secrets = read_demo_secrets(host)
    settings = demo_settings(host, secrets)
    stack = render_stack(settings, load_dashboard_9628(settings))
    state = read_host_state(host, settings)
    extras_files = render_extras(secrets, demo_images(host_data))
    claim = claim_host(settings, state)

    install_docker(settings, state)
    configure_stack(settings, state, stack)
    sync_stack_files(
        name="Write the demo's database, workload and alert sink",
        base_dir=EXTRAS_DIR,
        stack=extras_files,
        current=extras_state.entries,
        written=extras_state.written,
        claim=claim,
    )
    start_stack(settings, state, stack)
    # After the stack: they join its network.
    compose_up(
        name="Start the demo's database, workload and alert sink",
        base_dir=EXTRAS_DIR,
        project=EXTRAS_PROJECT,
        desired=extras_files.service_revisions,
        running=extras_state.containers,
        after_file_changes=(),
        claim=claim,
    )
    verify_stack(settings)
    show_demo(
        name="Show the pgmon demo",
        address=demo_address(host),
        local=str(host.name).startswith("@local"),
    )
    return settings


@deploy("Remove the pgmon demo's database, workload and alert sink")
def _remove_extras(host_data: dict):
    uninstall_stack(project_config(EXTRAS_PROJECT, EXTRAS_DIR, host_data), (POSTGRES_VOLUME,))


@deploy("Remove the pgmon demo's stack")
def _remove_stack(host_data: dict):
    uninstall_stack(project_config(PROJECT, BASE_DIR, host_data))


def uninstall_demo() -> None:
    """Remove everything of the demo from the current host, its data included: the extras first (they use
    the stack's network), then the stack. Nothing is done where the demo is not."""
    host_data = host.data.dict()
    _remove_extras(host_data)
    _remove_stack(host_data)
