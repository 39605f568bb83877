"""The isolation unit's shell, run against stand-in iptables and ip6tables that keep DOCKER-USER in a file, and
its timer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import tasks.isolation
from tasks.isolation import (
    _peers_present,
    _present,
    in_place,
    isolate_containers,
    peer_jumps,
    peers_chain,
    removal_command,
    rules,
    timer_file,
    timer_name,
    unit_file,
    unit_name,
)

from .conftest import HostExecuting

# Chains kept in files, DOCKER-USER in $STATE/<tool>, any other in $STATE/<tool>.<chain>. -n -L CHAIN: does the
# chain exist; -N/-F/-X: create, empty, delete; -S: list as iptables does; -C/-I/-A/-D CHAIN RULE...: check, insert
# at the top, append, delete the first match. -w SECONDS (wait for the xtables lock) is accepted and ignored.
STAND_IN = r"""#!/bin/sh
tool="$STATE/$(basename "$0")"
[ "$1" = -w ] && shift 2
op=$1; shift
[ "$op" = -n ] && shift
name=$1; shift
state=$tool; [ "$name" = DOCKER-USER ] || state="$tool.$name"
case $op in
  -N) [ ! -f "$state" ] && : > "$state"; exit ;;
esac
[ -f "$state" ] || exit 1
rule="$*"
case $op in
  -L) ;;
  -C) grep -qxF -- "$rule" "$state" ;;
  -I) { printf '%s\n' "$rule"; cat "$state"; } > "$state.new" && mv "$state.new" "$state" ;;
  -A) printf '%s\n' "$rule" >> "$state" ;;
  -D) n=$(grep -nxF -- "$rule" "$state" | head -n1 | cut -d: -f1); [ -n "$n" ] || exit 1
      sed -i "${n}d" "$state" ;;
  -F) : > "$state" ;;
  -X) [ ! -s "$state" ] && ! grep -q -- "-j $name\$" "$tool" && rm "$state" ;;
  -S) echo "-N $name"; sed "s/^/-A $name /" "$state" ;;
esac
"""


SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$STATE/systemctl.log"
"""


@pytest.fixture
def host(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables", "ip6tables", "systemctl"):
        (bin_dir / tool).write_text(STAND_IN if tool != "systemctl" else SYSTEMCTL)
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(tmp_path)}

    def run(script: str) -> int:
        return subprocess.run(["sh", "-c", script], env=env).returncode

    run.output = lambda script: (
        subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout
    )

    return tmp_path, run


def chain(state: Path, tool: str) -> list[str]:
    return (state / tool).read_text().splitlines()


def exec_start() -> str:
    line = next(x for x in unit_file("p").splitlines() if x.startswith("ExecStart="))
    assert line.startswith("ExecStart=/bin/sh -c '") and line.endswith("'")
    return line[len("ExecStart=/bin/sh -c '") : -1]


def test_both_families_get_both_rules_once_and_uninstall_removes_them(host):
    state, run = host
    (state / "iptables").write_text("-j RETURN\n")
    (state / "ip6tables").write_text("-j RETURN\n")
    assert run(_present("p")) != 0
    assert run(exec_start()) == 0 and run(exec_start()) == 0  # a restart of Docker: no duplicate
    assert chain(state, "iptables") == [*reversed(rules("p", "127.0.0.0/8")), "-j RETURN"]
    assert chain(state, "ip6tables") == [*reversed(rules("p", "::1/128")), "-j RETURN"]
    assert any("--ctorigdst 127.0.0.0/8" in r for r in chain(state, "iptables"))
    assert run(_present("p")) == 0
    (state / "ip6tables").write_text("-j RETURN\n")  # a firewall reload emptied one family
    assert run(_present("p")) != 0
    assert run(removal_command("p")) == 0
    assert chain(state, "iptables") == chain(state, "ip6tables") == ["-j RETURN"]


def test_a_family_without_a_docker_user_chain_needs_no_rule(host):
    state, run = host
    (state / "iptables").write_text("")
    assert run(exec_start()) == 0 and run(_present("p")) == 0
    assert len(chain(state, "iptables")) == 2 and not (state / "ip6tables").exists()


def test_stopping_the_unit_keeps_the_rules():
    # Docker stopped with live-restore stops the unit (PartOf) while the containers keep running.
    assert "ExecStop" not in unit_file("p") and "PartOf=docker.service" in unit_file("p")


def units(project: str = "p") -> dict[str, dict[str, list[str]]]:
    """The service's and the timer's settings, section by section, as systemd reads them (comments left out)."""
    parsed: dict[str, dict[str, list[str]]] = {}
    for name, text in (
        (unit_name(project), unit_file(project)),
        (timer_name(project), timer_file(project)),
    ):
        sections: dict[str, list[str]] = {}
        current = None
        for line in text.splitlines():
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
            elif line and not line.startswith("#"):
                current.append(line)
        parsed[name] = sections
    return parsed


def test_a_timer_starts_the_oneshot_again_every_half_minute():
    """A firewall reload that empties DOCKER-USER leaves the containers running and the rules gone: the timer runs
    the service again, which only a service that does not stay active lets it do (systemd.timer(5))."""
    service, timer = units()[unit_name("p")], units()[timer_name("p")]
    assert "Type=oneshot" in service["Service"]
    assert not any(s.startswith("RemainAfterExit=") for s in service["Service"])
    # The timer activates the service of its own name (no Unit=), counted from the end of its last run.
    assert timer_name("p").removesuffix(".timer") == unit_name("p").removesuffix(".service")
    assert not any(s.startswith("Unit=") for s in timer["Timer"])
    assert {"OnActiveSec=30s", "OnUnitInactiveSec=30s", "AccuracySec=1s"} <= set(timer["Timer"])
    assert timer["Install"] == ["WantedBy=timers.target"]
    # Quiet in the journal when nothing was missing: systemd's own lines for each start are info.
    assert {"LogLevelMax=notice", "SyslogLevel=notice"} <= set(service["Service"])


def test_each_run_puts_back_only_what_a_flush_removed_and_says_only_that(host):
    state, run = host
    (state / "iptables").write_text("-j RETURN\n")
    assert run.output(exec_start()).count("put back a missing DOCKER-USER rule of pgmon-p") == 2
    assert run.output(exec_start()) == ""  # every rule in place: nothing inserted, nothing said
    (state / "iptables").write_text(
        "-j RETURN\n"
    )  # iptables -F DOCKER-USER, Docker adding its RETURN again
    assert run.output(exec_start()) == (
        "put back a missing DOCKER-USER rule of pgmon-p (iptables)\n" * 2
    )
    assert chain(state, "iptables") == [
        *reversed(rules("p")),
        "-j RETURN",
    ]  # before Docker's RETURN
    kept = rules("p")[1]
    (state / "iptables").write_text(f"{kept}\n-j RETURN\n")  # one of the two removed by hand
    assert run.output(exec_start()) == "put back a missing DOCKER-USER rule of pgmon-p (iptables)\n"
    assert sorted(chain(state, "iptables")) == sorted([*rules("p"), "-j RETURN"])
    # nft flush ruleset: no chain until Docker makes it again. A failing run would mark the unit failed (the host
    # degraded) every half minute: this one succeeds, says nothing, and leaves the rules to a later run.
    (state / "iptables").unlink()
    assert run.output(exec_start()) == "" and not (state / "iptables").exists()


def test_the_deploy_installs_enables_and_starts_the_timer(host, monkeypatch):
    state, run = host
    monkeypatch.setattr(tasks.isolation, "UNIT_DIR", str(state))
    monkeypatch.setattr(tasks.isolation, "host", HostExecuting())
    (command,) = isolate_containers._inner("p", None, frozenset())
    (state / "iptables").write_text("-j RETURN\n")
    assert run(command) == 0
    assert (state / unit_name("p")).read_text() == unit_file("p")
    assert (state / timer_name("p")).read_text() == timer_file("p")
    calls = (state / "systemctl.log").read_text().splitlines()
    assert f"enable --quiet {unit_name('p')} {timer_name('p')}" in calls
    assert f"restart {timer_name('p')}" in calls
    # A host where the service, its rules and the timer are all in place is left alone (the deploy's No changes).
    digest = tasks.isolation._digest
    found = {"active", "enabled", "rule", f"unit {digest(unit_file('p'))}"}
    assert not in_place("p", None, frozenset(found))  # deployed before the timer existed
    assert in_place("p", None, frozenset({*found, f"timer {digest(timer_file('p'))}"}))


def test_uninstall_stops_the_timer_before_the_service_and_removes_both(host, monkeypatch):
    state, run = host
    monkeypatch.setattr(tasks.isolation, "UNIT_DIR", str(state))
    for name in (unit_name("p"), timer_name("p")):
        (state / name).write_text("")
    assert run(removal_command("p")) == 0
    assert (state / "systemctl.log").read_text().splitlines() == [
        f"disable --quiet --now {timer_name('p')}",
        f"disable --quiet --now {unit_name('p')}",
        "daemon-reload",
    ]
    assert not (state / unit_name("p")).exists() and not (state / timer_name("p")).exists()
    # A host deployed before the timer existed: only the service to stop.
    (state / "systemctl.log").unlink()
    (state / unit_name("p")).write_text("")
    assert run(removal_command("p")) == 0
    assert (state / "systemctl.log").read_text().splitlines()[0] == (
        f"disable --quiet --now {unit_name('p')}"
    )


def cluster_exec_start(members: tuple[str, ...] | None) -> str:
    line = next(x for x in unit_file("p", members).splitlines() if x.startswith("ExecStart="))
    return line[len("ExecStart=/bin/sh -c '") : -1]


def test_an_ha_group_admits_only_its_members_to_alertmanager_and_leaving_it_removes_the_chain(host):
    state, run = host
    (state / "iptables").write_text("-j RETURN\n")
    (state / "ip6tables").write_text("-j RETURN\n")
    members = ("10.0.0.11", "10.0.0.12")
    chain_file = state / f"iptables.{peers_chain('p')}"
    first = run.output(cluster_exec_start(members))
    assert "admitted only the HA group members" in first
    assert chain_file.read_text().splitlines() == [
        "-s 10.0.0.11 -j RETURN",
        "-s 10.0.0.12 -j RETURN",
        "-j DROP",
    ]
    # IPv6 has no member: everything from outside the bridges to Alertmanager's ports is dropped there.
    assert (state / f"ip6tables.{peers_chain('p')}").read_text().splitlines() == ["-j DROP"]
    assert all(jump in chain(state, "iptables") for jump in peer_jumps("p"))
    assert run(_peers_present("p")) == 0
    assert (
        run.output(cluster_exec_start(members)) == ""
    )  # the timer's runs: nothing rebuilt, nothing said
    # A third member joins: the chain is rebuilt with it, the jumps stay single.
    run.output(cluster_exec_start((*members, "10.0.0.13")))
    assert "-s 10.0.0.13 -j RETURN" in chain_file.read_text().splitlines()
    assert sum(j in peer_jumps("p") for j in chain(state, "iptables")) == 2
    # The host leaves the group: its unit removes the jumps and the chain.
    assert "removed the HA group chain" in run.output(cluster_exec_start(None))
    assert not chain_file.exists() and run(_peers_present("p")) != 0
    assert not any(j in peer_jumps("p") for j in chain(state, "iptables"))
    # Uninstall of a member removes them too.
    run.output(cluster_exec_start(members))
    assert run(removal_command("p")) == 0
    assert not chain_file.exists() and chain(state, "iptables") == ["-j RETURN"]


def test_a_member_whose_jumps_are_gone_is_not_in_place_and_a_former_member_with_them_neither():
    digest = tasks.isolation._digest
    members = ("10.0.0.11", "10.0.0.12")
    common = {"active", "enabled", "rule", f"timer {digest(timer_file('p'))}"}
    member = {*common, f"unit {digest(unit_file('p', members))}"}
    assert not in_place("p", members, frozenset(member))
    assert in_place("p", members, frozenset({*member, "peers"}))
    assert not in_place("p", ("10.0.0.11",), frozenset({*member, "peers"}))  # the unit names two
    single = {*common, f"unit {digest(unit_file('p'))}"}
    assert in_place("p", None, frozenset(single))
    assert not in_place("p", None, frozenset({*single, "peers"}))
