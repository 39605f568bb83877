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

The rules live in a systemd oneshot, ``pgmon-<project>-isolation.service``, started with Docker (``PartOf``,
``WantedBy=docker.service``), so they are back after every reboot and Docker restart, and again by
``pgmon-<project>-isolation.timer`` 30 s after each run ends: a firewall reload that empties ``DOCKER-USER``
(``firewall-cmd --reload``, ``iptables -F``, ``netfilter-persistent reload``) loses them for about half a minute
at most, without Docker or the containers being touched. Each run inserts (``-I``: before Docker's own
``RETURN``) only a rule that is missing, and logs only that; a family whose chain is gone (``nft flush ruleset``
until Docker makes it again) is left for a later run. The service has no ``RemainAfterExit``, which would keep
it active and make the timer's starts do nothing. Stopping it (Docker stopped with live-restore, its containers
still running) leaves the rules, and the timer keeps putting them back; only uninstall removes them.
Without systemd (a container as the processing host) nothing is installed and the run says so.

An HA group's members publish Alertmanager's API and gossip port on their own address (settings/cluster.py):
a connection from outside Docker's bridges to those container ports goes through a chain of the project's own,
``pgmon-peers-<digest>``, that returns for the members' addresses and drops the rest. The unit rebuilds the chain
whenever its rules differ from the members it was written for; outside a group it removes chain and jumps.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, operation

from .host_facts import HostFact
from .stack_model import (
    ALERTMANAGER_GOSSIP_PORT,
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


def timer_name(project: str) -> str:
    return f"pgmon-{project}-isolation.timer"


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


def peers_chain(project: str) -> str:
    # iptables chain names hold at most 28 characters; a project name up to 40.
    return f"pgmon-peers-{hashlib.sha256(project.encode()).hexdigest()[:10]}"


def peer_jumps(project: str) -> tuple[str, ...]:
    """The DOCKER-USER rules that send connections from outside Docker's bridges to Alertmanager's API and
    gossip ports through the members' chain."""
    into, tail = (
        "! -i br-+ -o br-+",
        f"-m comment --comment pgmon-{project} -j {peers_chain(project)}",
    )
    return (
        f"-p tcp -m multiport --dports {ALERTMANAGER_PORT},{ALERTMANAGER_GOSSIP_PORT} {into} {tail}",
        f"-p udp --dport {ALERTMANAGER_GOSSIP_PORT} {into} {tail}",
    )


def _family_members(members: tuple[str, ...], family: str) -> list[str]:
    version = 6 if family == "ip6tables" else 4
    return [m for m in members if ipaddress.ip_address(m).version == version]


def _peers_apply(project: str, members: tuple[str, ...] | None) -> str:
    """Each family's members chain and jumps as ``members`` says (None: outside a group, neither). Rebuilt
    only when its rules differ, so that a timer's run never leaves it open for an instant."""
    chain = peers_chain(project)
    parts = []
    for tool, _ in FAMILIES:
        run = f"{tool} -w 5"
        drop_jumps = " ".join(
            f"while {run} -D DOCKER-USER {jump} 2>/dev/null; do :; done;"
            for jump in peer_jumps(project)
        )
        if members is None:
            body = (
                f"if {run} -n -L {chain} >/dev/null 2>&1; then {drop_jumps} {run} -F {chain} && {run} -X {chain} "
                f'&& echo "removed the HA group chain of pgmon-{project} ({tool})"; fi'
            )
        else:
            admitted = [f"-s {m} -j RETURN" for m in _family_members(members, tool)] + ["-j DROP"]
            expected = " && ".join(f"{run} -C {chain} {r} 2>/dev/null" for r in admitted)
            fill = " && ".join(f"{run} -A {chain} {r}" for r in admitted)
            jumps = " && ".join(
                f"{{ {run} -C DOCKER-USER {jump} 2>/dev/null || {run} -I DOCKER-USER {jump}; }}"
                for jump in peer_jumps(project)
            )
            body = (
                f"{{ {run} -n -L {chain} >/dev/null 2>&1 || {run} -N {chain}; }} && "
                f"{{ {{ [ `{run} -S {chain} | wc -l` -eq {len(admitted) + 1} ] && {expected}; }} || "
                f"{{ {run} -F {chain} && {fill} && "
                f'echo "admitted only the HA group members to the Alertmanager of pgmon-{project} ({tool})"; }}; }} '
                f"&& {jumps}"
            )
        parts.append(f"{{ ! {run} -n -L DOCKER-USER >/dev/null 2>&1 || {{ {body}; }}; }}")
    return " && ".join(parts)


def rule(project: str) -> str:
    """The IPv4 rule that drops a neighbour's new connection (the tests check it is in place)."""
    return rules(project)[0]


def _each_rule(project: str, template: str) -> str:
    """``template`` (``{tool}`` to run, ``{family}`` to name, ``{rule}``) for every rule of every family whose
    DOCKER-USER chain exists: IPv6 too, where the daemon gives containers IPv6 addresses. ``-w``: a legacy
    iptables that another program holds (Docker starting a container, a firewall reloading) is waited for, not
    taken as a missing rule."""
    return " && ".join(
        f"{{ ! {tool} -w 5 -n -L DOCKER-USER >/dev/null 2>&1 || {{ "
        + " && ".join(
            template.format(tool=f"{tool} -w 5", family=tool, rule=r)
            for r in rules(project, loopback)
        )
        + "; }; }"
        for tool, loopback in FAMILIES
    )


def _present(project: str) -> str:
    """True when every rule is in place (a family without iptables or a DOCKER-USER chain needs none)."""
    return f"{{ {_each_rule(project, '{tool} -C DOCKER-USER {rule}')}; }} >/dev/null 2>&1"


def _peers_present(project: str) -> str:
    """True when the HA group's jumps are in place (the unit keeps the chain behind them as it was written)."""
    checks = " && ".join(f"iptables -w 5 -C DOCKER-USER {jump}" for jump in peer_jumps(project))
    return f"{{ {checks}; }} >/dev/null 2>&1"


def _apply(project: str, members: tuple[str, ...] | None) -> str:
    """Insert each missing rule, saying so; a rule in place is left as it is and nothing is said. Then the
    HA group's chain as ``members`` says."""
    return (
        _each_rule(
            project,
            "{{ {tool} -C DOCKER-USER {rule} 2>/dev/null || {{ {tool} -I DOCKER-USER {rule} && echo "
            f'"put back a missing DOCKER-USER rule of pgmon-{project} ({{family}})"; }}}}; }}}}',
        )
        + " && "
        + _peers_apply(project, members)
    )


def _unit(project: str, description: str, lines: list[str]) -> str:
    """A unit file of pgmon's: its header, ``[Unit]`` with ``description``, then ``lines``."""
    return "\n".join(
        [
            "# Written by pgmon (tasks/isolation.py); removed by uninstall.py.",
            "[Unit]",
            f"Description=pgmon ({project}): {description}",
            *lines,
            "",
        ]
    )


def unit_file(project: str, members: tuple[str, ...] | None = None) -> str:
    # No ExecStop: Docker stopped with live-restore keeps the containers running, and the rules must stay with
    # them; only uninstall (removal_command) deletes them. PartOf makes a Docker restart apply them again. The
    # timer starts it every 30 s: LogLevelMax drops systemd's Starting/Finished lines (info) for each start, and
    # SyslogLevel keeps what the script prints (a rule put back, an iptables error) above that.
    return _unit(
        project,
        "no neighbour reaches pgmon's containers by routing to their addresses",
        [
            "After=docker.service",
            "PartOf=docker.service",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart=/bin/sh -c '{_apply(project, members)}'",
            "SyslogLevel=notice",
            "LogLevelMax=notice",
            "",
            "[Install]",
            "WantedBy=docker.service",
        ],
    )


def timer_file(project: str) -> str:
    # Monotonic, counted from the end of the last run whoever started it (Docker, the deploy, this timer): runs
    # never overlap. OnActiveSec: the first start when no run has ended yet. AccuracySec: systemd's default of a
    # minute would stretch the bound on how long a flushed rule stays away.
    return _unit(
        project,
        "put back DOCKER-USER rules a firewall reload removed",
        [
            "",
            "[Timer]",
            "OnActiveSec=30s",
            "OnUnitInactiveSec=30s",
            "AccuracySec=1s",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ],
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def state_command(base_dir: str, project: str) -> str:
    """``isolation no-systemd``, or ``isolation unit <sha256>``, ``isolation timer <sha256>``, ``isolation active``
    (the timer), ``isolation enabled`` (service and timer), ``isolation rule``, ``isolation peers`` (the HA
    group's jumps) for what is in place."""
    name, timer = shlex.quote(unit_name(project)), shlex.quote(timer_name(project))
    unit = shlex.quote(f"{UNIT_DIR}/{unit_name(project)}")
    timer_path = shlex.quote(f"{UNIT_DIR}/{timer_name(project)}")
    return "\n".join(
        [
            "if [ -d /run/systemd/system ]; then",
            f'  [ ! -f {unit} ] || echo "isolation unit $(sha256sum < {unit} | cut -c1-64)"',
            f'  [ ! -f {timer_path} ] || echo "isolation timer $(sha256sum < {timer_path} | cut -c1-64)"',
            f"  ! systemctl is-active --quiet {timer} || echo 'isolation active'",
            f"  ! {{ systemctl is-enabled --quiet {name} && systemctl is-enabled --quiet {timer}; }} 2>/dev/null "
            "|| echo 'isolation enabled'",
            f"  ! {_present(project)} || echo 'isolation rule'",
            f"  ! {_peers_present(project)} || echo 'isolation peers'",
            "else echo 'isolation no-systemd'; fi",
        ]
    )


# HostState.isolation: the words after ``isolation``, what ``in_place`` compares.
ISOLATION = HostFact(
    "isolation", ("isolation",), state_command, lambda lines: frozenset(rest for _, rest in lines)
)


def in_place(project: str, members: tuple[str, ...] | None, found: frozenset[str]) -> bool:
    wanted = {
        f"unit {_digest(unit_file(project, members))}",
        f"timer {_digest(timer_file(project))}",
        "active",
        "enabled",
        "rule",
    }
    if members is not None:
        wanted.add("peers")
    elif "peers" in found:
        return False  # left by a group this host has left
    return "no-systemd" in found or wanted <= found


@operation()
def isolate_containers(
    project: str,
    members: tuple[str, ...] | None,
    found: frozenset[str],
    claim: FunctionCommand | None = None,
):
    """
    Install and start the unit that keeps neighbours from routing to pgmon's containers, and its timer (see the
    module's doc).

    + project: the Compose project (the unit and the rule's comment are named after it)
    + members: the HA group's addresses, admitted to Alertmanager's published ports; None outside a group
    + found: what the host-state listing said is in place (``HostState.isolation``)
    """
    if "no-systemd" in found:
        host.log(
            "pgmon: no systemd on this host: the rule that keeps neighbours from routing to the containers "
            "(tasks/isolation.py) is not installed"
        )
        return
    if in_place(project, members, found):
        return
    if not host.state.is_executing:
        host.log(
            f"pgmon: will install and start {unit_name(project)} and {timer_name(project)} (DOCKER-USER rules: no "
            "neighbour routes to pgmon's containers)"
        )
    if claim is not None:
        yield claim
    name, timer = shlex.quote(unit_name(project)), shlex.quote(timer_name(project))
    write = " && ".join(
        f"printf '%s' {shlex.quote(text)} > {shlex.quote(f'{UNIT_DIR}/{unit}')}"
        for unit, text in (
            (unit_name(project), unit_file(project, members)),
            (timer_name(project), timer_file(project)),
        )
    )
    yield (
        f"{write} && systemctl daemon-reload && systemctl enable --quiet {name} {timer} && "
        f"systemctl restart {name} && systemctl restart {timer}"
    )


def removal_command(project: str) -> str:
    # The timer first, so that nothing starts the service again; a unit whose file is absent (the timer, on a host
    # deployed before it existed) has nothing to stop or disable.
    stop = " && ".join(
        f"{{ [ ! -f {shlex.quote(f'{UNIT_DIR}/{unit}')} ] || systemctl disable --quiet --now {shlex.quote(unit)}; }}"
        for unit in (timer_name(project), unit_name(project))
    )
    files = " ".join(
        shlex.quote(f"{UNIT_DIR}/{unit}") for unit in (unit_name(project), timer_name(project))
    )
    # The unit has no ExecStop (live-restore): its rules go here, each as often as it was inserted.
    remove = _each_rule(
        project, "{{ while {tool} -D DOCKER-USER {rule} 2>/dev/null; do :; done; }}"
    )
    return f"{stop} && rm -f {files} && systemctl daemon-reload && {remove} && {_peers_apply(project, None)}"
