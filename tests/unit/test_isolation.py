"""The isolation unit's shell, run against stand-in iptables and ip6tables that keep DOCKER-USER in a file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tasks.isolation import _present, removal_command, rules, unit_file

# -n -L CHAIN: does the chain exist; -C/-I/-D CHAIN RULE...: check, insert at the top, delete the first match.
STAND_IN = r"""#!/bin/sh
state="$STATE/$(basename "$0")"
op=$1; shift
[ "$op" = -n ] && { [ -f "$state" ]; exit; }
[ -f "$state" ] || exit 1
[ "$1" = DOCKER-USER ] || exit 2
shift; rule="$*"
case $op in
  -C) grep -qxF -- "$rule" "$state" ;;
  -I) { printf '%s\n' "$rule"; cat "$state"; } > "$state.new" && mv "$state.new" "$state" ;;
  -D) n=$(grep -nxF -- "$rule" "$state" | head -n1 | cut -d: -f1); [ -n "$n" ] || exit 1
      sed -i "${n}d" "$state" ;;
esac
"""


@pytest.fixture
def host(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables", "ip6tables", "systemctl"):
        (bin_dir / tool).write_text(STAND_IN if tool != "systemctl" else "#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(tmp_path)}

    def run(script: str) -> int:
        return subprocess.run(["sh", "-c", script], env=env).returncode

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
