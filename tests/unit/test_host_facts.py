"""Each host fact: the lines its command prints -> the value its parser reads, bad lines included."""

import dataclasses
import hashlib
import os
import subprocess

import pytest

from tasks import host_facts as facts
from tasks.grafana_tls import CERTIFICATE_RENEWAL
from tasks.host_facts import Container, Entry
from tasks.host_state import HOST_FACTS, LOCK_HOLDER, HostState, parse_state
from tasks.isolation import ISOLATION

SHA = "a" * 64
# Lines another fact (or a shell profile) prints: every parser must leave them alone.
NOISE = ["Welcome to monitor", "engine-room 1", "containers 3", ""]

CASES = [
    (facts.DOCKER_INSTALLED, ["docker-installed"], True),
    (facts.DOCKER_INSTALLED, [], False),
    (facts.ENGINE_VERSION, ["engine 28.2.2"], "28.2.2"),
    (facts.ENGINE_VERSION, ["engine "], None),  # a client without an engine answering
    (facts.ENGINE_VERSION, [], None),
    (facts.COMPOSE_VERSION, ["compose 2.26.1"], "2.26.1"),
    (facts.COMPOSE_VERSION, ["compose "], None),
    (
        facts.CONTAINERS,
        ["container prometheus ab12 running", "container exporter-shop cd34 exited"],
        {"prometheus": Container("ab12", "running"), "exporter-shop": Container("cd34", "exited")},
    ),
    # A container of the project that pgmon did not label: its revision matches none, so it is recreated.
    (facts.CONTAINERS, ["container prometheus  running"], {"prometheus": Container("", "running")}),
    (facts.CONTAINERS, ["container a b", "container a b c d"], {}),
    (facts.GRAFANA_ADMIN_USER, ["grafana-admin admin"], "admin"),
    (facts.GRAFANA_ADMIN_USER, ["grafana-admin root beer"], "root beer"),
    (facts.GRAFANA_ADMIN_USER, [], None),
    (
        facts.ENTRIES,
        ["entry d 755 0 0 .", "entry f 400 65534 65534 ./exporters/shop/pgpass"]
        + [f"sum {SHA}  ./exporters/shop/pgpass"],
        {
            ".": Entry("d", 0o755, 0, 0),
            "exporters/shop/pgpass": Entry("f", 0o400, 65534, 65534, SHA),
        },
    ),
    (
        facts.ENTRIES,
        ["entry f 644 0 0 ./notes with spaces.txt"],
        {"notes with spaces.txt": Entry("f", 0o644, 0, 0)},
    ),
    # Unreadable lines are skipped: the file counts as absent (and is written again), never trusted.
    (facts.ENTRIES, ["entry f 7x9 0 0 ./a", "entry f 644 0", "entry f 644 root 0 ./b"], {}),
    (facts.ENTRIES, [f"sum {SHA}  ./only-summed"], {}),
    (facts.ENTRIES, ["entry f 644 0 0 ./a", f"sum {SHA} ./a"], {"a": Entry("f", 0o644, 0, 0)}),
    (
        facts.WRITTEN,
        ["written docker-compose.yml", "written exporters/shop"],
        frozenset({"docker-compose.yml", "exporters/shop"}),
    ),
    (facts.WRITTEN, [], None),  # no manifest: a host deployed before pgmon kept one
    (CERTIFICATE_RENEWAL, ["grafana-certificate renew"], True),
    (CERTIFICATE_RENEWAL, ["grafana-certificate keep"], False),
    (CERTIFICATE_RENEWAL, [], False),
    (
        ISOLATION,
        ["isolation unit 12ab", "isolation active", "isolation rule"],
        frozenset({"unit 12ab", "active", "rule"}),
    ),
    (ISOLATION, ["isolation no-systemd"], frozenset({"no-systemd"})),
    (
        LOCK_HOLDER,
        ["held by=admin from=me@laptop pid=12 since=2026-01-01T00:00:00Z"],
        "admin (SSH user) from me@laptop since 2026-01-01T00:00:00Z",
    ),
    (
        LOCK_HOLDER,
        ["held by=admin from=me@laptop pid=12 since=2026-01-01T00:00:00Z dir=/opt/pgmon"],
        "admin (SSH user) from me@laptop since 2026-01-01T00:00:00Z, for /opt/pgmon",
    ),
    (LOCK_HOLDER, ["held "], "a run that left no record"),
    (LOCK_HOLDER, [], None),
]


@pytest.mark.parametrize(
    "fact, lines, value", CASES, ids=[f"{fact.field}-{i}" for i, (fact, _, _) in enumerate(CASES)]
)
def test_each_fact_reads_its_lines(fact, lines, value):
    assert facts.parse_facts([fact], NOISE + lines + NOISE)[fact.field] == value


def test_every_field_of_the_host_state_is_one_facts_and_no_two_facts_share_a_word():
    every = (*HOST_FACTS, LOCK_HOLDER)
    assert sorted(f.field for f in every) == sorted(f.name for f in dataclasses.fields(HostState))
    words = [word for fact in every for word in fact.words]
    assert len(words) == len(set(words))
    # HostState is built by keyword: a listing with nothing in it is the state of a bare host.
    assert parse_state([]) == HostState(None, None, False, written=None)


def test_the_commands_are_shell_and_end_well_whatever_they_find(tmp_path):
    script = facts.facts_command(
        (*HOST_FACTS, LOCK_HOLDER), str(tmp_path / "missing dir"), "pgmon-x_1"
    )
    subprocess.run(["sh", "-n", "-c", script], check=True)
    assert subprocess.run(["sh", "-c", script], capture_output=True).returncode == 0


def test_the_file_facts_read_back_what_their_commands_print(tmp_path):
    base = tmp_path / "pgmon"
    (base / "exporters" / "shop").mkdir(parents=True)
    (base / "exporters" / "shop" / "pgpass").write_text("*:*:*:*:secret\n")
    (base / "exporters" / "shop" / "pgpass").chmod(0o400)
    (base / "a name with spaces").write_text("")
    (base / "bad\nname").write_text("")  # left out by the command, not misread
    (base / ".pgmon-manifest").write_text("exporters/shop/pgpass\n")
    lines = subprocess.run(
        ["sh", "-c", facts.facts_command([facts.ENTRIES, facts.WRITTEN], str(base), "pgmon")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found = facts.parse_facts([facts.ENTRIES, facts.WRITTEN], lines)
    uid, gid = os.getuid(), os.getgid()
    assert found["written"] == frozenset({"exporters/shop/pgpass"})
    assert sorted(found["entries"]) == [
        ".",
        ".pgmon-manifest",
        "a name with spaces",
        "exporters",
        "exporters/shop",
        "exporters/shop/pgpass",
    ]
    pgpass = found["entries"]["exporters/shop/pgpass"]
    assert (pgpass.kind, pgpass.mode, pgpass.uid, pgpass.gid) == ("f", 0o400, uid, gid)
    assert pgpass.sha256 == hashlib.sha256(b"*:*:*:*:secret\n").hexdigest()
