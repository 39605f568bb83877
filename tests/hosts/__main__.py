"""Test hosts by hand (see tests/hosts/README.md).

python3 -m tests.hosts up [NAME] [--processing N] [--database N]
    starts NAME (default pgmon-hosts) with N processing hosts (default 1) and N database hosts
    (default 1, admitting every processing host), prints addresses, the inventory line and the
    database credentials, and leaves everything running;
python3 -m tests.hosts down [NAME]
    removes everything NAME started (containers, volumes, network);
python3 -m tests.hosts list
    the networks test hosts run on now.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from . import LABEL, TestNetwork, docker, inventory_source, remove_leftovers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.hosts")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("name", nargs="?", default="pgmon-hosts")
    up.add_argument("--processing", type=int, default=1)
    up.add_argument("--database", type=int, default=1)
    down = sub.add_parser("down")
    down.add_argument("name", nargs="?", default="pgmon-hosts")
    sub.add_parser("list")
    args = parser.parse_args(argv)

    if args.command == "down":
        remove_leftovers(args.name)
        for path in Path(tempfile.gettempdir()).glob(
            f"{args.name}-*"
        ):  # its key and known_hosts (see `up`)
            if (path / "id_ed25519").exists() and (path / "known_hosts").exists():
                shutil.rmtree(path)
        return 0
    if args.command == "list":
        out = docker("network", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}").stdout
        print(out.strip() or "(none)")
        return 0

    net = TestNetwork.create(args.name)
    processing = net.start_hosts(args.processing, "processing") if args.processing else []
    databases = (
        net.start_hosts(args.database, "database", admit=processing) if args.database else []
    )
    print(
        f"network {net.name}: {net.subnet}; this machine is {net.gateway} there; registry {net.registry_address}"
    )
    for host in processing + databases:
        print(
            f"  {host.name:8} {host.kind:10} {host.address}   ssh {' '.join(host.ssh_options())} root@{host.address}"
        )
    for host in databases:
        for db in host.databases:
            print(
                f"  database {db.dbname}@{host.address}:{db.port} user {db.user} password {json.dumps(db.password)}"
            )
    if processing:
        print("inventory.py:\n  " + inventory_source(processing).strip())
    print(
        f"key and known_hosts: {net.workdir} (removed by: python3 -m tests.hosts down {net.name})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
