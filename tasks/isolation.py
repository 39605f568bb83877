"""No neighbour reaches pgmon's containers by routing to their addresses.

Docker publishes Prometheus and Alertmanager on the host's 127.0.0.1 only, but before Docker 28 its own
FORWARD rules accept a packet for a published container port from any interface: a machine on the same network
that routes the containers' subnets through the processing host (``ip route add 172.16.0.0/12 via <host>``)
reaches Prometheus (and its admin API, which backup.py uses) and Alertmanager directly. Debian 13 ships Docker 26.
pgmon closes that with one rule in Docker's ``DOCKER-USER`` chain: a new connection that comes from outside
Docker's bridges into one of them, to a port pgmon's containers listen on, is dropped unless Docker itself
translated it (a published port: Grafana's). Connections inside a bridge (Prometheus scraping), from the host
(``ssh -L``, docker-proxy), and replies are not concerned.

The rule lives in a systemd unit, ``pgmon-<project>-isolation.service``, started with Docker (``PartOf``,
``WantedBy=docker.service``), so it is back after every reboot and Docker restart. Without systemd (a container
as the processing host) nothing is installed and the run says so.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, operation

from .host_facts import HostFact
from .stack_model import (
    ALERTMANAGER_PORT,
    EXPORTER_PORT,
    GRAFANA_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
)

CONTAINER_PORTS = (
    GRAFANA_PORT,
    PROMETHEUS_PORT,
    ALERTMANAGER_PORT,
    NODE_EXPORTER_PORT,
    EXPORTER_PORT,
)
UNIT_DIR = "/etc/systemd/system"


def unit_name(project: str) -> str:
    return f"pgmon-{project}-isolation.service"


def rule(project: str) -> str:
    ports = ",".join(str(p) for p in CONTAINER_PORTS)
    return (
        f"-p tcp -m multiport --dports {ports} ! -i br-+ -o br-+ "
        f"-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment pgmon-{project} -j DROP"
    )


def _present(project: str) -> str:
    """True when the rule is in place, or there is no DOCKER-USER chain to put it in (no iptables: nothing to do)."""
    return (
        f"{{ ! command -v iptables || ! iptables -n -L DOCKER-USER || iptables -C DOCKER-USER {rule(project)}; }} "
        ">/dev/null 2>&1"
    )


def unit_file(project: str) -> str:
    apply = (
        f"iptables -n -L DOCKER-USER >/dev/null 2>&1 || exit 0; iptables -C DOCKER-USER {rule(project)} "
        f"2>/dev/null || iptables -I DOCKER-USER {rule(project)}"
    )
    remove = f"iptables -D DOCKER-USER {rule(project)} 2>/dev/null || true"
    return "\n".join(
        [
            "# Written by pgmon (tasks/isolation.py); removed by uninstall.py.",
            "[Unit]",
            f"Description=pgmon ({project}): no neighbour reaches pgmon's containers by routing to their addresses",
            "After=docker.service",
            "PartOf=docker.service",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"ExecStart=/bin/sh -c '{apply}'",
            f"ExecStop=/bin/sh -c '{remove}'",
            "",
            "[Install]",
            "WantedBy=docker.service",
            "",
        ]
    )


def state_command(base_dir: str, project: str) -> str:
    """``isolation no-systemd``, or ``isolation unit <sha256>``, ``isolation active``, ``isolation enabled``,
    ``isolation rule`` for what is in place."""
    name = shlex.quote(unit_name(project))
    unit = shlex.quote(f"{UNIT_DIR}/{unit_name(project)}")
    return "\n".join(
        [
            "if [ -d /run/systemd/system ]; then",
            f'  [ ! -f {unit} ] || echo "isolation unit $(sha256sum < {unit} | cut -c1-64)"',
            f"  ! systemctl is-active --quiet {name} || echo 'isolation active'",
            f"  ! systemctl is-enabled --quiet {name} 2>/dev/null || echo 'isolation enabled'",
            f"  ! {_present(project)} || echo 'isolation rule'",
            "else echo 'isolation no-systemd'; fi",
        ]
    )


# HostState.isolation: the words after ``isolation``, what ``in_place`` compares.
ISOLATION = HostFact(
    "isolation", ("isolation",), state_command, lambda lines: frozenset(rest for _, rest in lines)
)


def in_place(project: str, found: frozenset[str]) -> bool:
    wanted = {
        f"unit {hashlib.sha256(unit_file(project).encode()).hexdigest()}",
        "active",
        "enabled",
        "rule",
    }
    return "no-systemd" in found or wanted <= found


@operation()
def isolate_containers(project: str, found: frozenset[str], claim: FunctionCommand | None = None):
    """
    Install and start the unit that keeps neighbours from routing to pgmon's containers (see the module's doc).

    + project: the Compose project (the unit and the rule's comment are named after it)
    + found: what the host-state listing said is in place (``HostState.isolation``)
    """
    if "no-systemd" in found:
        host.log(
            "pgmon: no systemd on this host: the rule that keeps neighbours from routing to the containers "
            "(tasks/isolation.py) is not installed"
        )
        return
    if in_place(project, found):
        return
    if not host.state.is_executing:
        host.log(
            f"pgmon: will install and start {unit_name(project)} (a DOCKER-USER rule: no neighbour routes to "
            "pgmon's containers)"
        )
    if claim is not None:
        yield claim
    name = shlex.quote(unit_name(project))
    yield (
        f"printf '%s' {shlex.quote(unit_file(project))} > {shlex.quote(f'{UNIT_DIR}/{unit_name(project)}')} && "
        f"systemctl daemon-reload && systemctl enable --quiet {name} && systemctl restart {name}"
    )


def removal_command(project: str) -> str:
    name = shlex.quote(unit_name(project))
    return (
        f"systemctl disable --quiet --now {name} && rm -f {shlex.quote(f'{UNIT_DIR}/{unit_name(project)}')} && "
        "systemctl daemon-reload"
    )
