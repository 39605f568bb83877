"""No neighbour reaches pgmon's containers by routing to their addresses.

Docker publishes Prometheus and Alertmanager on the host's 127.0.0.1 only, but before Docker 28 its own
FORWARD rules accept a packet for a published container port from any interface: a machine on the same network
that routes the containers' subnets through the processing host (``ip route add 172.16.0.0/12 via <host>``)
reaches Prometheus (and its admin API, which backup.py uses) and Alertmanager directly. Debian 13 ships Docker 26.
Docker's DNAT for a port published on 127.0.0.1 also matches a packet for 127.0.0.1 from any interface
(moby#41872), so a neighbour sending to 127.0.0.1:9090 at the host's MAC reaches Prometheus too.
pgmon closes both with rules in Docker's ``DOCKER-USER`` chain, for IPv4 and, where Docker has that chain, IPv6: a
new connection that comes from outside Docker's bridges into one of them, to a port pgmon's containers listen on,
is dropped unless Docker itself translated it (a published port: Grafana's), and so is any such connection first
addressed to the host's loopback. Connections inside a bridge (Prometheus scraping), from the host (``ssh -L``,
docker-proxy), and replies are not concerned.

The rules live in a systemd unit, ``pgmon-<project>-isolation.service``, started with Docker (``PartOf``,
``WantedBy=docker.service``), so they are back after every reboot and Docker restart. Stopping the unit (Docker
stopped with live-restore, its containers still running) leaves them; only uninstall removes them. A firewall
reload that flushes ``DOCKER-USER`` removes them until Docker or the unit restarts, or the next deploy.
Without systemd (a container as the processing host) nothing is installed and the run says so.
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


# Each family's loopback: Docker's DNAT for a port published on 127.0.0.1 (or ::1) matches packets from any
# interface before Docker 28 (moby#41872). Routed traffic never comes from the host's own loopback (that takes
# OUTPUT, docker-proxy or ssh -L), so a forwarded connection first addressed there is a neighbour's.
FAMILIES = (("iptables", "127.0.0.0/8"), ("ip6tables", "::1/128"))


def rules(project: str, loopback: str = "127.0.0.0/8") -> tuple[str, ...]:
    """The DOCKER-USER rules of one address family: a new connection from outside Docker's bridges to a port of
    pgmon's containers, unless Docker translated it for a published port; and any connection whose original
    destination was the host's loopback."""
    ports = ",".join(str(p) for p in CONTAINER_PORTS)
    into = f"-p tcp -m multiport --dports {ports} ! -i br-+ -o br-+ -m conntrack"
    tail = f"-m comment --comment pgmon-{project} -j DROP"
    return (
        f"{into} ! --ctstate RELATED,ESTABLISHED,DNAT {tail}",
        f"{into} --ctorigdst {loopback} {tail}",
    )


def rule(project: str) -> str:
    """The IPv4 rule that drops a neighbour's new connection (the tests check it is in place)."""
    return rules(project)[0]


def _each_rule(project: str, template: str) -> str:
    """``template`` (``{tool}``, ``{rule}``) for every rule of every family whose DOCKER-USER chain exists: IPv6
    too, where the daemon gives containers IPv6 addresses."""
    return " && ".join(
        f"{{ ! {tool} -n -L DOCKER-USER >/dev/null 2>&1 || "
        f"{{ {' && '.join(template.format(tool=tool, rule=r) for r in rules(project, loopback))}; }}; }}"
        for tool, loopback in FAMILIES
    )


def _present(project: str) -> str:
    """True when every rule is in place (a family without iptables or a DOCKER-USER chain needs none)."""
    return f"{{ {_each_rule(project, '{tool} -C DOCKER-USER {rule}')}; }} >/dev/null 2>&1"


def _apply(project: str) -> str:
    return _each_rule(
        project, "{{ {tool} -C DOCKER-USER {rule} 2>/dev/null || {tool} -I DOCKER-USER {rule}; }}"
    )


def unit_file(project: str) -> str:
    # No ExecStop: Docker stopped with live-restore keeps the containers running, and the rules must stay with
    # them; only uninstall (removal_command) deletes them. PartOf makes a Docker restart apply them again.
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
            f"ExecStart=/bin/sh -c '{_apply(project)}'",
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
    # The unit has no ExecStop (live-restore): its rules go here, each as often as it was inserted.
    remove = _each_rule(
        project, "{{ while {tool} -D DOCKER-USER {rule} 2>/dev/null; do :; done; }}"
    )
    return (
        f"systemctl disable --quiet --now {name} && rm -f {shlex.quote(f'{UNIT_DIR}/{unit_name(project)}')} && "
        f"systemctl daemon-reload && {remove}"
    )
