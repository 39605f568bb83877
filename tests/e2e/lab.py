"""The end-to-end lab: this machine prepared as a processing host reached over real SSH.

It starts (and later stops only what it started) a Docker engine, two
PostgreSQL 15 clusters (5432 with databases shop and billing, 5433 with
ledger), PostgreSQL 17 (5434, orders) and 18 (5435, reports) in containers,
and an sshd on 127.0.0.1:2222 that accepts a key made for the run; on request
(``create_replica``), a PostgreSQL 15 primary (5436) and its streaming replica (5437), and a streaming
replica of the 18 (5439, ``POSTGRES18_REPLICA``); for the benchmark, a PostgreSQL 17 of its own (5438,
``BENCH_SERVER``).
Deploys go through pyinfra's normal interface: an inventory file and a
group_data folder, written by ``Lab.write_project`` or by you.

Use it by hand (CONTRIBUTING.md, "Running your own inventory through the lab"):

    python3 -m tests.e2e.lab up      # prints the inventory line to use
    pyinfra my/inventory.py deploy.py
    python3 -m tests.e2e.lab down
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tasks.render.api_auth import API_USER, PASSWORD_FILE

from .capture import CaptureServer

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_FIXTURE = REPO / "tests/fixtures/dashboard-9628.json"
FLEET_DASHBOARD = REPO / "files/grafana/dashboards/pgmon-fleet.json"
LAB_DIR = Path(os.environ.get("PGMON_LAB_DIR", "/tmp/pgmon-lab"))
SSH_PORT = 2222
DOCKER_BRIDGE_IP = "172.17.0.1"  # docker0: containers reach the host here (host.docker.internal)
PG_VERSION = "15"


@dataclass(frozen=True)
class ContainerServer:
    """A PostgreSQL major this machine has no packages for, run from its image (tests/e2e/images/build_images.sh)
    and published on the Docker bridge address, where containers reach the host's clusters too."""

    version: str
    port: int
    max_connections: int = 100  # PostgreSQL's default
    # Started by whoever needs it (start_cluster), not by ``Lab.up``; ``suffix`` tells its container apart.
    on_demand: bool = False
    suffix: str = ""
    # A streaming replica of the container server on this port, made by pg_basebackup on its first start
    # (a fast checkpoint: the default spread one waits minutes on an idle primary).
    replica_of: int = 0

    @property
    def container(self) -> str:
        return f"pgmon-lab-postgresql{self.version}{self.suffix}"

    @property
    def image(self) -> str:
        return f"pgmon-test/postgresql:{self.version}"

    @property
    def marker(self) -> str:
        return f"postgresql{self.version}{self.suffix}.started"


# Every other major Debian offers here: 17 moved pg_stat_bgwriter's checkpoint columns, 18 is the newest.
POSTGRES17 = ContainerServer("17", 5434)
POSTGRES18 = ContainerServer("18", 5435)
# The benchmark's: room for an exporter per database at 500 (one connection held each, two while scraping).
BENCH_SERVER = ContainerServer("17", 5438, max_connections=1200, on_demand=True, suffix="-bench")
# 18's replica. Without a replication slot, so that no WAL is held for it on the shared primary once removed
# (its replication role and pg_hba.conf line stay, unused).
POSTGRES18_REPLICA = ContainerServer(
    "18", 5439, on_demand=True, suffix="-replica", replica_of=POSTGRES18.port
)
REPLICATION_ROLE = "pgmon_lab_replicator"
CONTAINER_SERVERS = {
    server.port: server for server in (POSTGRES17, POSTGRES18, BENCH_SERVER, POSTGRES18_REPLICA)
}
POSTGRES17_PORT, POSTGRES18_PORT = POSTGRES17.port, POSTGRES18.port


@dataclass(frozen=True)
class LabDatabase:
    name: str
    port: int
    dbname: str
    user: str
    password: str
    sslmode: str = "require"


# Passwords full of characters that break naive URL or YAML templating.
DATABASES = (
    LabDatabase("shop", 5432, "shop", "pgmon_shop", "p@ss:w/rd#%'\"1\\shop$HOME"),
    LabDatabase(
        "billing", 5432, "billing", "pgmon_billing", "b1ll!ng@#%:/?&='\"", sslmode="disable"
    ),
    LabDatabase("ledger", 5433, "ledger", "pgmon_ledger", "l3dger$$`x`@:/#%"),
    LabDatabase("analytics", 5432, "analytics", "pgmon_analytics", "an@lyt1cs:/#%'\"$x"),
    LabDatabase(
        "orders", POSTGRES17_PORT, "orders", "pgmon_orders", "0rd3rs@17:/#%'\"$", sslmode="disable"
    ),
    LabDatabase(
        "reports",
        POSTGRES18_PORT,
        "reports",
        "pgmon_reports",
        "r3p0rts@18:/?#%'\"`$x`",
        sslmode="disable",
    ),
)
CLUSTERS = {5432: "main", 5433: "second"}


@dataclass(frozen=True)
class ReplicaPair:
    """A primary and its streaming replica, two Debian clusters the replica suite (tests/e2e/test_incidents_replica.py)
    makes afresh with ``Lab.create_replica`` and drops after: it pauses, cuts and promotes the replica and breaks
    the primary's archiving and slots, so neither is one the other suites share."""

    primary: LabDatabase  # its cluster's port, database and monitoring role
    replica_port: int
    slot: str  # the replica's physical replication slot on the primary

    @property
    def replica(self) -> LabDatabase:
        """The replica's copy of the primary's database, its role and password included, as pgmon's "standby"."""
        return replace(self.primary, name="standby", port=self.replica_port)

    def cluster(self, port: int) -> str:
        return "pgmon_replica" if port == self.replica_port else "pgmon_primary"

    marker = "postgres-replica-pair.started"


REPLICA = ReplicaPair(
    LabDatabase("payments", 5436, "payments", "pgmon_payments", "p@ym3nts:/#%'\"$x"),
    5437,
    "pgmon_lab_replica",
)
# Each server of the lab on a port of its own: psql_command and stop_cluster pick the server by port.
_PORTS = [*CLUSTERS, *CONTAINER_SERVERS, REPLICA.primary.port, REPLICA.replica_port]
assert len(_PORTS) == len(set(_PORTS)), f"two lab servers share a port: {sorted(_PORTS)}"


def run(
    *args: str, check: bool = True, input: str | None = None, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, text=True, capture_output=True, input=input, **kwargs)


def psql_command(
    port: int, dbname: str, *options: str, environment: dict[str, str] | None = None
) -> list[str]:
    """psql as the superuser on the local socket of the server on ``port``: a cluster of the machine's, or inside
    its container; ``environment`` for psql only (PGAPPNAME, ...)."""
    environment = [f"{key}={value}" for key, value in (environment or {}).items()]
    if server := CONTAINER_SERVERS.get(port):
        prefix, port = (
            ["docker", "exec", "-i", *(f"--env={pair}" for pair in environment), server.container],
            5432,
        )
    else:
        prefix = ["runuser", "-u", "postgres", "--", "env", *environment]
    return [*prefix, "psql", "-X", *options, "-p", str(port), "-d", dbname]


def wait_until(what: str, condition, timeout: float, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready within {timeout:.0f}s")


def _pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Lab:
    def __init__(self, directory: Path = LAB_DIR):
        self.dir = directory
        self.ssh_key = self.dir / "id_ed25519"
        self.started: set[str] = set()  # markers of what this object started

    def _mark_started(self, marker: str, content: str = "") -> None:
        (self.dir / marker).write_text(content)
        self.started.add(marker)

    # --- machine services -------------------------------------------------
    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # tests/run's two workers may start the lab at once: one starts what is missing, the other finds it.
        with open(self.dir / "up.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._start_services()

    def _start_services(self) -> None:
        if (
            not shutil.which("dockerd")
            or not Path("/usr/libexec/docker/cli-plugins/docker-compose").exists()
        ):
            raise RuntimeError(
                "run tests/e2e/prepare_machine.sh first (Docker engine and Compose missing)"
            )
        self._start_docker()
        run("bash", str(REPO / "tests/e2e/images/build_images.sh"))
        for server in CONTAINER_SERVERS.values():
            if not server.on_demand:
                self._start_container_server(server)
        self._start_postgres()
        self._start_sshd()

    def down(self, everything: bool = False) -> None:
        """Stop what this object started; with ``everything``, what any ``up`` left running."""
        markers = {p.name for p in self.dir.glob("*.started*")} if everything else self.started
        for server in CONTAINER_SERVERS.values():
            if server.marker in markers and (self.dir / server.marker).exists():
                self.remove_container_server(server)
        for name in ("sshd", "dockerd"):
            pidfile = self.dir / f"{name}.started-pid"
            if pidfile.name in markers and pidfile.exists():
                pid = int(pidfile.read_text())
                if _pid_alive(pid):
                    os.kill(pid, 15)
                    wait_until(f"{name} to stop", lambda pid=pid: not _pid_alive(pid), 30)
                pidfile.unlink()
        if REPLICA.marker in markers:
            self.remove_replica()
        for _port, cluster in CLUSTERS.items():
            marker = self.dir / f"postgres-{cluster}.started"
            if marker.name in markers and marker.exists():
                run("pg_ctlcluster", PG_VERSION, cluster, "stop", check=False)
                marker.unlink()

    def _start_docker(self) -> None:
        if run("docker", "info", check=False).returncode == 0:
            return
        log = open(self.dir / "dockerd.log", "ab")
        process = subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
        self._mark_started("dockerd.started-pid", str(process.pid))
        wait_until("dockerd", lambda: run("docker", "info", check=False).returncode == 0, 60)

    def _server_certificate(self) -> tuple[Path, Path]:
        """A self-signed certificate so that sslmode=require is exercised."""
        cert, key = self.dir / "pg-server.crt", self.dir / "pg-server.key"
        if not cert.exists():
            run(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=pgmon-lab",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            )
            shutil.chown(key, "postgres", "postgres")
            key.chmod(0o600)
            cert.chmod(0o644)
        return cert, key

    def _start_postgres(self) -> None:
        cert, key = self._server_certificate()
        self.dir.chmod(0o755)  # the postgres user reads the certificate from here
        for port, cluster in CLUSTERS.items():
            if not Path(f"/etc/postgresql/{PG_VERSION}/{cluster}").exists():
                run("pg_createcluster", PG_VERSION, cluster, "--port", str(port))
            conf = Path(f"/etc/postgresql/{PG_VERSION}/{cluster}")
            (conf / "conf.d").mkdir(exist_ok=True)
            lab_conf = conf / "conf.d" / "pgmon-lab.conf"
            old = lab_conf.read_text() if lab_conf.exists() else ""
            lab_conf.write_text(
                f"listen_addresses = 'localhost,{DOCKER_BRIDGE_IP}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
            )
            hba = conf / "pg_hba.conf"
            changed = old != lab_conf.read_text()
            # Docker's default address pools: 172.17-31.x, then 192.168.x once those are used.
            for network in ("172.16.0.0/12", "192.168.0.0/16"):
                line = f"host all all {network} scram-sha-256  # pgmon-lab: Docker networks\n"
                if line not in hba.read_text():
                    hba.write_text(hba.read_text() + line)
                    changed = True
            if run("pg_ctlcluster", PG_VERSION, cluster, "status", check=False).returncode != 0:
                run("pg_ctlcluster", PG_VERSION, cluster, "start")
                self._mark_started(f"postgres-{cluster}.started")
            elif changed:
                run("pg_ctlcluster", PG_VERSION, cluster, "restart")
        self.create_databases([db for db in DATABASES if db.port in CLUSTERS])

    def _start_container_server(self, server: ContainerServer) -> None:
        """Runs ``server``'s container, or starts it again with its data (stopped by ``stop_cluster``, or with
        the engine) if it was made from the current image, and creates its databases."""
        state = run(
            "docker",
            "inspect",
            "-f",
            "{{.State.Running}} {{.Image}}",
            server.container,
            check=False,
        ).stdout
        running, _, image = state.strip().partition(" ")
        if running != "true":
            current = run(
                "docker", "image", "inspect", "-f", "{{.Id}}", server.image, check=False
            ).stdout.strip()
            if (
                image != current
                or run("docker", "start", server.container, check=False).returncode != 0
            ):
                run("docker", "rm", "-f", "-v", server.container, check=False)
                settings = [
                    "-c",
                    "shared_preload_libraries=pg_stat_statements",
                    "-c",
                    f"max_connections={server.max_connections}",
                ]
                # Passwords reach docker by name, not on its command line. The superuser's own is never used
                # (the lab connects on the local socket).
                if server.replica_of:
                    password = secrets.token_hex(16)
                    self._allow_replication(CONTAINER_SERVERS[server.replica_of], password)
                    start = ["-e", "PGPASSWORD", "--entrypoint", "/bin/sh", server.image, "-c"]
                    start.append(
                        '[ -s "$PGDATA/PG_VERSION" ] || pg_basebackup -h '
                        f"{DOCKER_BRIDGE_IP} -p {server.replica_of} -U {REPLICATION_ROLE} "
                        '-D "$PGDATA" -R -X stream --checkpoint=fast || exit 1; '
                        f"exec postgres -D \"$PGDATA\" -c listen_addresses='*' {' '.join(settings)}"
                    )
                    environment = {"PGPASSWORD": password}
                else:
                    start = ["-e", "POSTGRES_PASSWORD", server.image, *settings]
                    environment = {"POSTGRES_PASSWORD": secrets.token_hex(16)}
                run(
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    server.container,
                    "-p",
                    f"{DOCKER_BRIDGE_IP}:{server.port}:5432",
                    *start,
                    env={**os.environ, **environment},
                )
            self._mark_started(server.marker)
        wait_until(
            f"PostgreSQL {server.version}",
            lambda: (
                run("docker", "exec", server.container, "pg_isready", "-q", check=False).returncode
                == 0
            ),
            60,
        )
        self.create_databases([db for db in DATABASES if db.port == server.port])

    def _allow_replication(self, primary: ContainerServer, password: str) -> None:
        """A replication role with ``password`` on ``primary``, and a pg_hba.conf line that lets it in."""
        self.psql(
            primary.port,
            "postgres",
            f"SELECT 'CREATE ROLE {REPLICATION_ROLE} REPLICATION LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{REPLICATION_ROLE}') \\gexec\n"
            f"ALTER ROLE {REPLICATION_ROLE} PASSWORD :'pw';\n",
            variables={"pw": password},
        )
        line = f"host replication {REPLICATION_ROLE} 0.0.0.0/0 scram-sha-256"
        run(
            "docker",
            "exec",
            primary.container,
            "sh",
            "-c",
            f'grep -qxF "{line}" "$PGDATA/pg_hba.conf" || echo "{line}" >> "$PGDATA/pg_hba.conf"',
        )
        self.psql(primary.port, "postgres", "SELECT pg_reload_conf()")

    def remove_container_server(self, server: ContainerServer) -> None:
        """``server``'s container and its data, gone."""
        run("docker", "rm", "-f", "-v", server.container, check=False)
        (self.dir / server.marker).unlink(missing_ok=True)

    def create_databases(self, databases) -> None:
        """Each database with its own monitoring role (pg_monitor) and password."""
        for db in databases:
            self.psql(
                db.port,
                "postgres",
                f"SELECT 'CREATE ROLE {db.user} LOGIN' WHERE NOT EXISTS "
                f"(SELECT FROM pg_roles WHERE rolname = '{db.user}') \\gexec\n"
                f"ALTER ROLE {db.user} PASSWORD :'pw';\n"
                f"GRANT pg_monitor TO {db.user};\n"
                f"SELECT 'CREATE DATABASE {db.dbname}' WHERE NOT EXISTS "
                f"(SELECT FROM pg_database WHERE datname = '{db.dbname}') \\gexec\n",
                variables={"pw": db.password},
            )

    def psql(
        self, port: int, dbname: str, sql: str, variables: dict[str, str] | None = None
    ) -> str:
        args = psql_command(port, dbname, "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1")
        for key, value in (variables or {}).items():
            args += ["-v", f"{key}={value}"]
        return run(*args, input=sql).stdout

    def stop_cluster(self, port: int) -> None:
        """A fast shutdown of the server on ``port``: a cluster of the machine's, or a container's (which then
        stops, keeping its data)."""
        if server := CONTAINER_SERVERS.get(port):
            run(
                "docker", "kill", "--signal", "INT", server.container
            )  # SIGINT: PostgreSQL's fast shutdown
            run("docker", "wait", server.container)
        else:
            run("pg_ctlcluster", PG_VERSION, CLUSTERS[port], "stop", "-m", "fast")

    def start_cluster(self, port: int) -> None:
        if server := CONTAINER_SERVERS.get(port):
            self._start_container_server(server)
        else:
            run("pg_ctlcluster", PG_VERSION, CLUSTERS[port], "start")

    # --- a primary and its streaming replica (REPLICA) ----------------------------------------------------
    def create_replica(self, pair: ReplicaPair = REPLICA) -> None:
        """Fresh clusters: the primary, configured as the lab's own (TLS, listen addresses, pg_hba.conf: main's
        files) with its database and monitoring role; the replica from ``pg_basebackup -R -C -S`` (real
        replication through a physical slot), with ``archive_mode = on`` and an ``archive_command`` that succeeds,
        so that once promoted it archives (a standby does not). What an interrupted run left is removed first."""
        self.remove_replica(pair)
        lab_conf = Path(f"/etc/postgresql/{PG_VERSION}/{CLUSTERS[5432]}")
        for port in (pair.primary.port, pair.replica_port):
            run("pg_createcluster", PG_VERSION, pair.cluster(port), "--port", str(port))
            self._mark_started(pair.marker)
            conf = Path(f"/etc/postgresql/{PG_VERSION}/{pair.cluster(port)}")
            (conf / "conf.d").mkdir(exist_ok=True)
            (conf / "conf.d" / "pgmon-lab.conf").write_text(
                (lab_conf / "conf.d" / "pgmon-lab.conf").read_text()
            )
            (conf / "pg_hba.conf").write_text(
                (lab_conf / "pg_hba.conf").read_text()
            )  # keeps its owner and mode
        run("pg_ctlcluster", PG_VERSION, pair.cluster(pair.primary.port), "start")
        self.create_databases([pair.primary])
        replica_conf = Path(f"/etc/postgresql/{PG_VERSION}/{pair.cluster(pair.replica_port)}")
        (replica_conf / "conf.d" / "pgmon-lab-replica.conf").write_text(
            "archive_mode = on\narchive_command = 'true'\n"
        )
        data = Path(f"/var/lib/postgresql/{PG_VERSION}/{pair.cluster(pair.replica_port)}")
        shutil.rmtree(data)
        run(
            "runuser",
            "-u",
            "postgres",
            "--",
            "pg_basebackup",
            "-p",
            str(pair.primary.port),
            "-D",
            str(data),
            "-R",
            "-C",
            "-S",
            pair.slot,
            "--checkpoint=fast",
            "-X",
            "stream",
        )
        run("pg_ctlcluster", PG_VERSION, pair.cluster(pair.replica_port), "start")
        streaming = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        wait_until(
            "the replica streaming",
            lambda: self.psql(pair.replica_port, "postgres", streaming).strip() == "1",
            60,
        )

    def remove_replica(self, pair: ReplicaPair = REPLICA) -> None:
        """Stops and drops both clusters."""
        for port in (pair.replica_port, pair.primary.port):
            if Path(f"/etc/postgresql/{PG_VERSION}/{pair.cluster(port)}").exists():
                run("pg_dropcluster", "--stop", PG_VERSION, pair.cluster(port))
        (self.dir / pair.marker).unlink(missing_ok=True)
        self.started.discard(pair.marker)

    def _start_sshd(self) -> None:
        if not self.ssh_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh_key))
            run(
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                str(self.dir / "ssh_host_ed25519_key"),
            )
        authorized = self.dir / "authorized_keys"
        authorized.write_text((self.dir / "id_ed25519.pub").read_text())
        authorized.chmod(0o600)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {SSH_PORT}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.dir}/ssh_host_ed25519_key\n"
            f"AuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nAllowTcpForwarding yes\n"
            f"PidFile {self.dir}/sshd.pid\n"
        )
        pidfile = self.dir / "sshd.started-pid"
        if pidfile.exists() and _pid_alive(int(pidfile.read_text())):
            return
        Path("/run/sshd").mkdir(exist_ok=True)
        log = open(self.dir / "sshd.log", "ab")
        process = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self._mark_started(pidfile.name, str(process.pid))
        wait_until(
            "sshd",
            lambda: (
                run("ssh", *self.ssh_options(), "root@127.0.0.1", "true", check=False).returncode
                == 0
            ),
            30,
        )

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.ssh_key),
            "-p",
            str(SSH_PORT),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]

    def inventory_source(self) -> str:
        data = {
            "ssh_port": SSH_PORT,
            "ssh_user": "root",
            "ssh_key": str(self.ssh_key),
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
        }
        return f'pgmon_hosts = [("127.0.0.1", {data!r})]\n'


@dataclass
class Project:
    """An inventory and group_data folder on disk, and the environment holding their secrets."""

    directory: Path
    environment: dict[str, str]

    def write(self, inventory: str, group_data: dict[str, object]) -> None:
        (self.directory / "group_data").mkdir(parents=True, exist_ok=True)
        (self.directory / "inventory.py").write_text(inventory)
        body = "".join(f"{key} = {value!r}\n" for key, value in group_data.items())
        (self.directory / "group_data" / "all.py").write_text(body)

    def _command(
        self, args: tuple[str, ...], deploy: str, python: str = sys.executable
    ) -> tuple[list[str], dict[str, str]]:
        if "--dry" not in args:
            args = ("-y", *args)
        env = {
            **os.environ,
            **self.environment,
            "XDG_CACHE_HOME": str(self.directory / "cache"),
            "PYTHONUNBUFFERED": "1",
        }  # each line as pyinfra prints it, for runs watched while they go
        env.pop("PGMON_HOST", None)
        return [python, "-m", "pyinfra", *args, "inventory.py", str(REPO / deploy)], env

    def pyinfra(
        self,
        *args: str,
        timeout: float = 900,
        deploy: str = "deploy.py",
        python: str = sys.executable,
    ) -> subprocess.CompletedProcess:
        """``pyinfra [args] inventory.py <repo>/<deploy>`` run from the project folder, as a user would.

        ``-y`` (no confirmation prompt) is added except with ``--dry``, where it would skip change detection.
        An absolute ``deploy`` is used as it is; ``python`` is the interpreter that runs ``-m pyinfra``
        (another virtual environment's, tests/e2e/test_library.py).
        """
        command, env = self._command(args, deploy, python)
        return subprocess.run(
            command, cwd=self.directory, env=env, text=True, capture_output=True, timeout=timeout
        )

    def start(self, *args: str, deploy: str = "deploy.py") -> BackgroundRun:
        """The same run, in the background, its output collected as it comes."""
        command, env = self._command(args, deploy)
        return BackgroundRun(
            subprocess.Popen(
                command,
                cwd=self.directory,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )


class BackgroundRun:
    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(process.stdout), daemon=True
        )
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 180) -> None:
        """Until a line of its output holds ``text``; fails (with the output) if the run ended first."""
        wait_until(
            f"the run to print {text!r}",
            lambda: self.process.poll() is not None or any(text in line for line in self.lines),
            timeout,
        )
        assert any(text in line for line in self.lines), "".join(self.lines)[-4000:]

    def finish(self) -> tuple[int, str]:
        self.process.wait(timeout=900)
        self._reader.join(timeout=30)
        return self.process.returncode, "".join(self.lines)


# The builds the suite runs (tests/e2e/images/build_images.sh, from Debian sid): the nearest of each line the
# defaults name (docs/versions.md); no registry here has the defaults themselves.
TESTED_IMAGES = {
    "prometheus": "prom/prometheus:v3.5.3",
    "alertmanager": "prom/alertmanager:v0.33.1",
    "postgres_exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.19.1",
    "node_exporter": "prom/node-exporter:v1.11.1",
    "grafana": "grafana/grafana:12.2.1",
}
BASE_DIR = "/opt/pgmon-e2e"
COMPOSE_PROJECT = "pgmon-e2e"
PROMETHEUS_PORT, ALERTMANAGER_PORT, GRAFANA_PORT = 19090, 19093, 13000
SCRAPE_SECONDS = 2
EVALUATION_SECONDS = 2
POSTGRES_DOWN_FOR = "4s"
GROUP_WAIT = "1s"


def serve_dashboard_fixture() -> ThreadingHTTPServer:
    """Serves tests/fixtures/dashboard-9628.json at grafana.com's download path, on loopback."""

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path):
            if path.startswith("/api/dashboards/9628/revisions/"):
                return str(DASHBOARD_FIXTURE)
            return "/nonexistent"

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class Site:
    """Where a deployment lives on the lab host, so the suite and the benchmark do not collide."""

    base_dir: str = BASE_DIR
    project: str = COMPOSE_PROJECT
    prometheus_port: int = PROMETHEUS_PORT
    alertmanager_port: int = ALERTMANAGER_PORT
    grafana_port: int = GRAFANA_PORT

    def __post_init__(self) -> None:
        # A published port inside the kernel's ephemeral range can be taken by any outgoing connection first
        # (a CI run failed on 49090: "bind: address already in use").
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        for port in (self.prometheus_port, self.alertmanager_port, self.grafana_port):
            assert port < first_ephemeral, (
                f"site port {port} is in the ephemeral range (from {first_ephemeral})"
            )


class Deployment:
    """A pgmon project in a folder (inventory.py + group_data/), run through pyinfra over SSH."""

    def __init__(
        self,
        lab: Lab,
        directory: Path,
        discord: CaptureServer,
        telegram: CaptureServer,
        dashboard_url: str,
        databases: tuple[LabDatabase, ...] = DATABASES,
        site: Site = Site(),
    ):
        self.lab = lab
        self.site = site
        self.databases = databases
        self.discord, self.telegram = discord, telegram
        self.dashboard_url = dashboard_url
        self.secrets = {
            "PGMON_E2E_DISCORD_URL": f"http://host.docker.internal:{discord.port}/api/webhooks/{discord._server.secret}",
            "PGMON_E2E_TELEGRAM_TOKEN": telegram._server.secret,
            "PGMON_E2E_TELEGRAM_CHAT": "-100987654321",
            "PGMON_E2E_GRAFANA_PASSWORD": "gr@fana:" + secrets.token_hex(8) + "'\"#%",
            "PGMON_E2E_GRAFANA_SECRET_KEY": "k3y:" + secrets.token_urlsafe(32) + "'\"#%$",
        }
        for db in databases:
            self.secrets[self.password_env(db.name)] = db.password
        self.project = Project(directory, self.secrets)
        self.outputs: list[str] = []

    @staticmethod
    def password_env(name: str) -> str:
        return f"PGMON_E2E_{name.upper()}_PASSWORD"

    def group_data(self, names: list[str]) -> dict:
        databases = [
            {
                "name": db.name,
                "host": "host.docker.internal",
                "port": db.port,
                "dbname": db.dbname,
                "user": db.user,
                "password_env": self.password_env(db.name),
                "sslmode": db.sslmode,
            }
            for name in names
            for db in self.databases
            if db.name == name
        ]
        return {
            "pgmon_databases": databases,
            "pgmon_discord": {"webhook_url_env": "PGMON_E2E_DISCORD_URL"},
            "pgmon_telegram": {
                "bot_token_env": "PGMON_E2E_TELEGRAM_TOKEN",
                "chat_id_env": "PGMON_E2E_TELEGRAM_CHAT",
                "api_url": f"http://host.docker.internal:{self.telegram.port}",
            },
            "pgmon_grafana_admin_password_env": "PGMON_E2E_GRAFANA_PASSWORD",
            "pgmon_grafana_secret_key_env": "PGMON_E2E_GRAFANA_SECRET_KEY",
            "pgmon_base_dir": self.site.base_dir,
            "pgmon_project": self.site.project,
            "pgmon_prometheus_port": self.site.prometheus_port,
            "pgmon_alertmanager_port": self.site.alertmanager_port,
            "pgmon_grafana_bind_address": "127.0.0.1",
            # Asked for: Grafana on this machine's loopback only, where no password crosses a network, and the suites
            # read it over plain HTTP. HTTPS, pgmon's default, is proven on test hosts (tests/e2e/test_bare_host.py).
            "pgmon_grafana_https": False,
            "pgmon_grafana_port": self.site.grafana_port,
            "pgmon_scrape_interval_seconds": SCRAPE_SECONDS,
            "pgmon_evaluation_interval_seconds": EVALUATION_SECONDS,
            "pgmon_alert_timing": {
                "postgres_down_for": POSTGRES_DOWN_FOR,
                "group_wait": GROUP_WAIT,
                "group_interval": "5s",
                "repeat_interval": "1h",
            },
            # Pinned as a user would pin the published JSON: the deploy refuses any other bytes.
            "pgmon_dashboard_9628": {
                "url": self.dashboard_url + "/api/dashboards/9628/revisions/{revision}/download",
                "sha256": hashlib.sha256(DASHBOARD_FIXTURE.read_bytes()).hexdigest(),
            },
            "pgmon_verify_timeout_seconds": 120,
            "pgmon_images": TESTED_IMAGES,
        }

    def configure(self, names: list[str], **overrides) -> None:
        self.project.write(self.lab.inventory_source(), {**self.group_data(names), **overrides})

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = self.project.pyinfra(*args)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def containers(self) -> dict[str, str]:
        """service -> container id, for the project's containers."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.site.project}",
                "--format",
                '{{.Label "com.docker.compose.service"}} {{.ID}}',
            ],
            text=True,
            capture_output=True,
            check=True,
        ).stdout
        return dict(line.split() for line in out.splitlines())

    def host_fingerprint(self) -> dict:
        """Every file under base_dir (content, mode, owner), and every container: its id, its state and when it
        last started, so that one stopped, or stopped and started again, shows."""
        files = {}
        base = Path(self.site.base_dir)
        if base.exists():
            for path in sorted(base.rglob("*")):
                st = path.lstat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
                files[str(path.relative_to(base))] = (digest, st.st_mode, st.st_uid, st.st_gid)
        containers = self.containers()
        states = (
            subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.StartedAt}}",
                    *containers.values(),
                ],
                text=True,
                capture_output=True,
                check=True,
            ).stdout.splitlines()
            if containers
            else []
        )
        return {
            "files": files,
            "containers": {
                service: (cid, state)
                for (service, cid), state in zip(containers.items(), states, strict=True)
            },
        }

    def teardown(self) -> None:
        subprocess.run(
            ["docker", "compose", "-p", self.site.project, "down", "--volumes", "--remove-orphans"],
            cwd="/",
            capture_output=True,
        )
        subprocess.run(["rm", "-rf", self.site.base_dir], check=True)


def api_auth(port: int) -> tuple[str, str] | None:
    """The credentials of the Prometheus or Alertmanager published on ``port`` here: the password file the deploy
    wrote for that container (read as root), fresh at every call, as a rotated Grafana password changes it.
    None where there is no such file: a stack deployed by a release before the APIs' login (test_upgrade)."""
    container = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"publish={port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(container) == 1, f"one container publishes {port}: {container}"
    mounts = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Mounts}}", container[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (folder,) = [
        m["Source"]
        for m in json.loads(mounts)
        if m["Destination"] in ("/etc/prometheus", "/etc/alertmanager")
    ]
    password = Path(folder, "secrets", PASSWORD_FILE)
    return (API_USER, password.read_text()) if password.exists() else None


def prometheus_query(query: str, port: int = PROMETHEUS_PORT) -> list[dict]:
    response = requests.get(
        f"http://127.0.0.1:{port}/api/v1/query",
        params={"query": query},
        auth=api_auth(port),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["data"]["result"]


def main(argv: list[str]) -> int:
    lab = Lab()
    if argv[:1] == ["up"]:
        lab.up()
        print("lab ready. Inventory for the processing host (this machine over SSH):")
        print("  " + lab.inventory_source().strip())
        print(
            f"PostgreSQL: {', '.join(f'{d.dbname}@{d.port} (user {d.user})' for d in DATABASES)};"
            f" containers reach them at host.docker.internal. Passwords: tests/e2e/lab.py DATABASES."
        )
        return 0
    if argv[:1] == ["down"]:
        lab.down(everything=True)
        return 0
    print("usage: python3 -m tests.e2e.lab up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
