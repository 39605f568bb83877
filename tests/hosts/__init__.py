"""Test hosts: bare Debian 13 servers, each a separate machine as far as pgmon can tell.

A host is a container running systemd as PID 1, with sshd, python3 and apt, its
own machine id, SSH host keys, address and (once someone installs Docker) its
own nested Docker engine. Hosts live on an ``--internal`` Docker network: no
route leaves this machine. On the network:

- a container registry (Debian's docker-registry, aliases ``docker.io`` and
  ``quay.io``) holding the images given to ``TestNetwork.create``, so that a
  plain ``docker pull prom/prometheus:...`` on a processing host is served
  locally (its ``/etc/docker/daemon.json`` names the registry as a mirror);
- ``/repo``, a local apt repository mounted read-only in every host and its
  only apt source (``docker.io``, ``docker-compose``, ``postgresql``...).

This machine reaches every address on the network directly (SSH, HTTP), and
hosts reach this machine at ``network.gateway`` (bind test servers there).

    with TestNetwork.create("pgmon-demo") as net:
        proc = net.start_host("proc", kind="processing")
        db = net.start_host("db", kind="database", admit=[proc])
        proc.ssh("docker --version", check=False)
        print(proc.inventory_source())

Images and the repository come from ``tests/hosts/prepare.sh`` (run it first; a
second run takes seconds). Everything a network starts carries the label
``pgmon.testhosts=<network name>``; ``close()`` (or ``python3 -m tests.hosts
down NAME``) removes it all: containers, volumes, network, keys.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import socket
import socketserver
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("PGMON_TEST_CACHE", "/var/cache/pgmon-test")) / "hosts"
MANIFEST = CACHE / "manifest.json"
LABEL = "pgmon.testhosts"
KINDS = ("processing", "database", "bare")

# The options that let systemd and a nested Docker engine run without --privileged on this
# machine (shared/MACHINE-NOTES.md, "Test hosts"): no CAP_SYS_RESOURCE here, cgroup v1 only.
HOST_RUN_OPTIONS = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    "--cgroupns=private",
    "--stop-signal",
    "SIGRTMIN+3",
    "--stop-timeout",
    "30",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
)
HOST_BOOT = (
    'mount -o remount,bind,rw /sys && for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; '
    "done; exec /sbin/init"
)


class TestHostError(RuntimeError):
    __test__ = False


def docker(
    *args: str, check: bool = True, input: str | bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    result = subprocess.run(
        ["docker", *args], input=input, capture_output=True, text=text, timeout=timeout
    )
    if check and result.returncode != 0:
        err = result.stderr if text else result.stderr.decode(errors="replace")
        raise TestHostError(
            f"docker {' '.join(args[:3])}... failed ({result.returncode}): {err.strip()[-2000:]}"
        )
    return result


def wait_for(what: str, condition, timeout: float, interval: float = 0.25):
    """``condition()``'s first truthy result; TestHostError at the deadline, with its last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last and not isinstance(last, _NotYet):
            return last
        if time.monotonic() >= deadline:
            detail = f" (last: {last.why})" if isinstance(last, _NotYet) and last.why else ""
            raise TestHostError(f"{what}: not within {timeout:.0f}s{detail}")
        time.sleep(interval)


@dataclass
class _NotYet:
    why: str = ""

    def __bool__(self) -> bool:
        return False


def load_manifest() -> dict:
    if not MANIFEST.exists():
        raise TestHostError(f"no {MANIFEST}: run `bash tests/hosts/prepare.sh` first")
    manifest = json.loads(MANIFEST.read_text())
    for key in ("host_image", "database_image", "registry_image"):
        label = docker(
            "image",
            "inspect",
            "-f",
            '{{ index .Config.Labels "pgmon.testhost" }}',
            manifest[key],
            check=False,
        ).stdout.strip()
        if label != manifest[key.replace("image", "fingerprint")]:
            raise TestHostError(
                f"image {manifest[key]} is missing or stale: run `bash tests/hosts/prepare.sh`"
            )
    return manifest


def default_images() -> tuple[str, ...]:
    """The images the suite's deploys run (tests/e2e/lab.py TESTED_IMAGES), as built on this machine."""
    from tests.e2e.lab import TESTED_IMAGES

    return tuple(TESTED_IMAGES.values())


def split_image(reference: str) -> tuple[str, str, str]:
    """``quay.io/a/b:v1`` -> ("quay.io", "a/b", "v1"); ``prom/x:v2`` -> ("docker.io", "prom/x", "v2")."""
    name, _, tag = (
        reference.rpartition(":")
        if ":" in reference.rsplit("/", 1)[-1]
        else (reference, "", "latest")
    )
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return registry, path, tag


# ---------------------------------------------------------------- loopback port forward
class _Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class PortForward:
    """127.0.0.1:<port> -> (address, port): how this machine's dockerd pushes to a registry on an
    --internal network (which ignores -p); 127.0.0.0/8 is an insecure registry for Docker by default."""

    def __init__(self, address: str, port: int):
        target = (address, port)
        sockets: set[socket.socket] = set()
        self._sockets = sockets

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                upstream = socket.create_connection(target, timeout=10)
                upstream.settimeout(None)
                sockets.update((upstream, self.request))

                def pump(src, dst):
                    try:
                        while data := src.recv(65536):
                            dst.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for s in (src, dst):
                            try:
                                s.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass

                other = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
                other.start()
                pump(self.request, upstream)
                other.join()
                upstream.close()
                sockets.discard(upstream)
                sockets.discard(self.request)

        self._server = _Forwarder(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for s in list(self._sockets):
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- hosts
@dataclass(frozen=True)
class HostDatabase:
    """A database on a database host, with its own monitoring role (pg_monitor)."""

    dbname: str
    user: str
    password: str
    port: int = 5432


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Host:
    network: TestNetwork
    name: str
    kind: str
    container: str
    volume: str | None
    address: str = ""
    databases: list[HostDatabase] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)

    # --- commands ------------------------------------------------------------
    def exec(
        self, command: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """``command`` run by root's shell on the host, through Docker (not SSH)."""
        result = docker(
            "exec",
            "-i",
            self.container,
            "sh",
            "-c",
            command,
            check=False,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise TestHostError(
                f"{self.name}: `{command[:200]}` exited {result.returncode}: "
                f"{(result.stdout + result.stderr).strip()[-3000:]}"
            )
        return result

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.network.ssh_key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.network.known_hosts}",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ]

    def ssh(
        self,
        command: str,
        user: str = "root",
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """``command`` over real SSH from this machine, with the network's key and known host keys."""
        result = subprocess.run(
            ["ssh", *self.ssh_options(), f"{user}@{self.address}", command],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise TestHostError(
                f"{self.name}: ssh `{command[:200]}` exited {result.returncode}: "
                f"{(result.stdout + result.stderr).strip()[-3000:]}"
            )
        return result

    # --- pyinfra -------------------------------------------------------------
    def inventory_data(self, user: str = "root") -> dict:
        return {
            "ssh_user": user,
            "ssh_port": 22,
            "ssh_key": str(self.network.ssh_key),
            "ssh_known_hosts_file": str(self.network.known_hosts),
            "ssh_strict_host_key_checking": "yes",
        }

    def inventory_source(self, group: str = "pgmon_hosts", user: str = "root") -> str:
        return inventory_source([self], group, user)

    def add_admin(self, user: str) -> None:
        """An admin account as cloud images make one: the network's key, a shell, sudo without a password
        (pyinfra's ``_sudo = True``). Root keeps its own access."""
        name = shlex.quote(user)
        self.exec(
            f"id -u {name} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {name}; "
            f"install -d -m 0700 -o {name} -g {name} ~{user}/.ssh && "
            f"install -m 0600 -o {name} -g {name} /root/.ssh/authorized_keys ~{user}/.ssh/authorized_keys && "
            f"echo {shlex.quote(f'{user} ALL=(ALL:ALL) NOPASSWD: ALL')} > /etc/sudoers.d/90-{user} && "
            f"chmod 0440 /etc/sudoers.d/90-{user} && visudo -cq"
        )

    # --- life cycle ----------------------------------------------------------
    def wait_ready(self, timeout: float = 90) -> None:
        """systemd reached ``running`` (a failed unit raises, naming it) and sshd answers."""

        def booted():
            state = docker(
                "exec", self.container, "systemctl", "is-system-running", check=False, timeout=20
            )
            word = state.stdout.strip()
            if word in ("running", "degraded"):
                return word
            return _NotYet(word or state.stderr.strip()[-200:])

        if wait_for(f"{self.name}: systemd to finish booting", booted, timeout) == "degraded":
            failed = docker(
                "exec",
                self.container,
                "systemctl",
                "--failed",
                "--no-legend",
                "--plain",
                check=False,
            )
            raise TestHostError(
                f"{self.name}: systemd is degraded; failed units: {failed.stdout.strip()}"
            )
        self.network._learn_host_keys(self)

        def ssh_answers():
            probe = self.ssh("true", check=False, timeout=20)
            return probe.returncode == 0 or _NotYet(probe.stderr.strip()[-200:])

        wait_for(f"{self.name}: sshd to accept the test key", ssh_answers, 30)

    def restart(self, timeout: float = 120) -> None:
        """A reboot: every process stops (systemd shuts down cleanly) and the machine boots again."""
        docker("restart", "-t", "30", self.container, timeout=60)
        self.wait_ready(timeout)

    def stop(self) -> None:
        docker("stop", "-t", "30", self.container, timeout=60)

    def start(self, timeout: float = 120) -> None:
        docker("start", self.container)
        self.wait_ready(timeout)

    def memory(self) -> dict[str, int]:
        """Bytes the host uses, with everything it runs (nested containers included): ``usage`` as the
        kernel counts it (page cache included) and ``working_set`` (usage minus inactive file cache, what
        `docker stats` shows elsewhere). Read from the cgroup: docker 20.10's stats say 0B here."""
        cid = docker("inspect", "-f", "{{.Id}}", self.container).stdout.strip()
        for base in (
            Path("/sys/fs/cgroup/memory/docker") / cid,
            Path("/sys/fs/cgroup/docker") / cid,
        ):
            usage_file = base / (
                "memory.usage_in_bytes" if "memory" in base.parts else "memory.current"
            )
            if usage_file.exists():
                usage = int(usage_file.read_text())
                stat = dict(
                    line.split() for line in (base / "memory.stat").read_text().splitlines()
                )
                inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
                return {"usage": usage, "working_set": usage - inactive}
        raise TestHostError(f"{self.name}: no memory cgroup found for {cid}")

    # --- database kind -------------------------------------------------------
    def _configure_postgresql(self) -> None:
        """A server listening on every address, with its own TLS key pair."""
        self.exec(
            "set -e; make-ssl-cert generate-default-snakeoil --force-overwrite; "
            "for conf in /etc/postgresql/*/main; do "
            "printf \"listen_addresses = '*'\\n\" > $conf/conf.d/pgmon-test.conf; done; "
            "systemctl restart postgresql; "
            "i=0; until pg_isready -q; do i=$((i+1)); [ $i -lt 120 ] || exit 1; sleep 0.25; done"
        )

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """SQL as the postgres superuser on the local socket (stdin: no secret on a command line)."""
        return self.exec(
            f"runuser -u postgres -- psql -X -q -t -A -v ON_ERROR_STOP=1 -d {shlex.quote(dbname)}",
            input=sql,
        ).stdout

    def create_database(self, db: HostDatabase) -> None:
        self.psql(
            f"SELECT 'CREATE ROLE {db.user} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{db.user}') \\gexec\n"
            f"ALTER ROLE {db.user} PASSWORD {sql_literal(db.password)};\n"
            f"GRANT pg_monitor TO {db.user};\n"
            f"SELECT 'CREATE DATABASE {db.dbname}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = "
            f"'{db.dbname}') \\gexec\n"
        )
        self.databases.append(db)

    def admit(self, client: Host | str) -> None:
        """pg_hba.conf admits ``client``'s address (password, scram-sha-256), then a reload."""
        address = client.address if isinstance(client, Host) else client
        line = f"host all all {address}/32 scram-sha-256  # pgmon test: admitted client"
        self.exec(
            f"for hba in /etc/postgresql/*/main/pg_hba.conf; do grep -qxF {shlex.quote(line)} $hba || "
            f"echo {shlex.quote(line)} >> $hba; done; systemctl reload postgresql"
        )
        self.admitted.append(address)


def inventory_source(hosts: list[Host], group: str = "pgmon_hosts", user: str = "root") -> str:
    """An inventory.py line for pyinfra: the hosts by address, ``user`` (root) over SSH with the test key."""
    entries = ", ".join(f"({h.address!r}, {h.inventory_data(user)!r})" for h in hosts)
    return f"{group} = [{entries}]\n"


# ---------------------------------------------------------------- the network
class TestNetwork:
    """An --internal Docker network with a registry; hosts are started on it."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str, manifest: dict, workdir: Path):
        self.name = name
        self.manifest = manifest
        self.workdir = workdir
        self.ssh_key = workdir / "id_ed25519"
        self.known_hosts = workdir / "known_hosts"
        self.hosts: dict[str, Host] = {}
        self.images: tuple[str, ...] = ()
        self.subnet = self.gateway = self.registry_address = ""
        self._free = iter(())
        self._registries: list[str] = []
        self.registry_container = f"{name}-registry"
        self._forward: PortForward | None = None
        self._lock = threading.Lock()
        self.timings: dict[str, float] = {}

    # --- creation ------------------------------------------------------------
    @classmethod
    def create(
        cls, name: str, images: tuple[str, ...] | list[str] | None = None, subnet: str | None = None
    ) -> TestNetwork:
        """The network, its registry holding ``images`` (default: pgmon's), and a key made for this run.

        Whatever an interrupted run left under the same name is removed first.
        """
        manifest = load_manifest()
        remove_leftovers(name)
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        net = cls(name, manifest, workdir)
        try:
            started = time.monotonic()
            net._create_network(subnet)
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"{name}-test-key",
                    "-f",
                    str(net.ssh_key),
                ],
                check=True,
                capture_output=True,
            )
            net.known_hosts.write_text("")
            net._start_registry(tuple(default_images() if images is None else images))
            net.timings["network"] = time.monotonic() - started
            return net
        except BaseException:
            net.close()
            raise

    def _create_network(self, subnet: str | None) -> None:
        """With an explicit subnet, so that hosts keep a fixed address across reboots as servers do
        (Docker gives ``--ip`` only on such networks). Without one, Docker picks a free range, which
        is then pinned by creating the network again with it."""
        create = ["network", "create", "--internal", "--label", f"{LABEL}={self.name}"]
        for _attempt in range(5):
            if subnet is None:
                docker(*create, self.name)
                picked = json.loads(
                    docker("network", "inspect", "-f", "{{json .IPAM.Config}}", self.name).stdout
                )
                docker("network", "rm", self.name)
                candidate = picked[0]["Subnet"]
            else:
                candidate = subnet
            network = ipaddress.ip_network(candidate)
            result = docker(
                *create,
                "--subnet",
                str(network),
                "--gateway",
                str(network[1]),
                self.name,
                check=False,
            )
            if result.returncode == 0:
                self.subnet, self.gateway = str(network), str(network[1])
                self._free = (str(a) for a in network.hosts() if a > network[1])
                return
            if subnet is not None or "overlap" not in result.stderr:
                raise TestHostError(f"docker network create {self.name}: {result.stderr.strip()}")
        raise TestHostError(f"docker network create {self.name}: no free subnet after 5 tries")

    def _next_address(self) -> str:
        with self._lock:
            return next(self._free)

    def _start_registry(self, images: tuple[str, ...]) -> None:
        registries = sorted({"docker.io", "quay.io"} | {split_image(i)[0] for i in images})
        aliases = [arg for r in registries for arg in ("--network-alias", r)]
        self.registry_address = self._next_address()
        docker(
            "run",
            "-d",
            "--name",
            self.registry_container,
            "--network",
            self.name,
            "--ip",
            self.registry_address,
            *aliases,
            "--label",
            f"{LABEL}={self.name}",
            "--mount",
            "type=volume,dst=/var/lib/registry",
            self.manifest["registry_image"],
        )
        self._registries = registries

        def answers():
            try:
                with urllib.request.urlopen(
                    f"http://{self.registry_address}/v2/", timeout=2
                ) as response:
                    return response.status == 200
            except OSError as error:
                return _NotYet(str(error))

        wait_for("registry", answers, 30)
        self.push(images)

    def push(self, images: tuple[str, ...] | list[str]) -> None:
        """Copies images of this machine's engine into the network's registry, under their own names."""
        if self._forward is None:
            self._forward = PortForward(self.registry_address, 80)
        started = time.monotonic()

        def push_one(image: str) -> None:
            if docker("image", "inspect", image, check=False).returncode != 0:
                raise TestHostError(
                    f"image {image} is not on this machine (tests/e2e/images/build_images.sh)"
                )
            _, path, tag = split_image(image)
            local = f"127.0.0.1:{self._forward.port}/{path}:{tag}"
            docker("tag", image, local)
            try:
                docker("push", local, timeout=600)
            finally:
                docker("rmi", local, check=False)  # the tag only; the image stays

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(push_one, images))
        self.images = tuple(dict.fromkeys(self.images + tuple(images)))
        self.timings["push"] = self.timings.get("push", 0) + time.monotonic() - started

    def daemon_json(self) -> dict:
        """What an admin of an offline site writes: the registry as Docker Hub's mirror, and the other
        registries by name (their network aliases) over plain HTTP."""
        return {
            "registry-mirrors": [f"http://{self.registry_address}"],
            "insecure-registries": [r for r in self._registries if r != "docker.io"],
        }

    def registry_catalog(self) -> dict[str, list[str]]:
        """repository -> tags, asked over HTTP from this machine."""

        def get(path):
            with urllib.request.urlopen(
                f"http://{self.registry_address}{path}", timeout=10
            ) as response:
                return json.loads(response.read())

        return {
            repo: get(f"/v2/{repo}/tags/list")["tags"]
            for repo in get("/v2/_catalog")["repositories"]
        }

    def registry_log(self) -> str:
        result = docker("logs", self.registry_container, check=False)
        return result.stdout + result.stderr

    # --- hosts ---------------------------------------------------------------
    def start_host(
        self,
        name: str,
        kind: str = "processing",
        *,
        admit: list[Host | str] | None = None,
        databases: list[HostDatabase] | None = None,
        timeout: float = 90,
    ) -> Host:
        """One host, booted and answering SSH. Kinds:

        - ``processing``: bare server; /etc/docker/daemon.json names the registry (Docker not installed);
        - ``database``: PostgreSQL (from the local repo) on every address, ``databases`` created (default:
          one, ``appdb`` with role ``pgmon_monitor``, a random password) and pg_hba.conf admitting only the
          addresses of ``admit`` (add more with ``host.admit``);
        - ``bare``: nothing added.
        """
        host = self._create(name, kind)
        self._boot(host, timeout)
        if kind == "database":
            self._setup_database(host, admit or [], databases)
        return host

    def start_hosts(
        self,
        count: int,
        kind: str = "processing",
        prefix: str | None = None,
        timeout: float = 120,
        **options,
    ) -> list[Host]:
        """``count`` hosts of ``kind`` named <prefix>1..N, booted in parallel."""
        prefix = prefix or {"processing": "proc", "database": "db"}.get(kind, "host")
        hosts = [self._create(f"{prefix}{i}", kind) for i in range(1, count + 1)]
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda h: self._boot(h, timeout), hosts))
        if kind == "database":
            for host in hosts:
                self._setup_database(host, options.get("admit") or [], options.get("databases"))
        return hosts

    def _create(self, name: str, kind: str) -> Host:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        with self._lock:
            if name in self.hosts:
                raise TestHostError(f"host {name} exists already on {self.name}")
            container = f"{self.name}-{name}"
            volume = f"{container}-docker"
            self.hosts[name] = host = Host(self, name, kind, container, volume)
        host.address = self._next_address()
        image = self.manifest["database_image" if kind == "database" else "host_image"]
        labels = ["--label", f"{LABEL}={self.name}", "--label", f"{LABEL}.kind={kind}"]
        docker("volume", "create", *labels, volume)
        docker(
            "create",
            "--name",
            container,
            "--hostname",
            name,
            "--network",
            self.name,
            "--ip",
            host.address,
            "--network-alias",
            name,
            *labels,
            *HOST_RUN_OPTIONS,
            "--mount",
            f"type=volume,src={volume},dst=/var/lib/docker",
            "--mount",
            f"type=bind,src={self.manifest['repo']},dst=/repo,readonly",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            HOST_BOOT,
        )
        # Put before the first boot, as an installer would: the run's public key and, on a processing
        # host, the daemon.json an admin writes for an offline site (before Docker is installed).
        files = {"root/.ssh/authorized_keys": (Path(f"{self.ssh_key}.pub").read_bytes(), 0o600)}
        if kind == "processing":
            files["etc/docker/daemon.json"] = (
                json.dumps(self.daemon_json(), indent=2).encode() + b"\n",
                0o644,
            )
        docker("cp", "-", f"{container}:/", input=_tar(files))
        return host

    def _boot(self, host: Host, timeout: float) -> None:
        started = time.monotonic()
        docker("start", host.container)
        host.wait_ready(timeout)
        self.timings[f"boot {host.name}"] = time.monotonic() - started

    def _setup_database(
        self, host: Host, admit: list[Host | str], databases: list[HostDatabase] | None
    ) -> None:
        started = time.monotonic()
        host._configure_postgresql()
        for db in databases or [
            HostDatabase("appdb", "pgmon_monitor", "m0n:" + secrets.token_hex(8) + "@/#%'\"")
        ]:
            host.create_database(db)
        for client in admit:
            host.admit(client)
        self.timings[f"postgresql {host.name}"] = time.monotonic() - started

    def _learn_host_keys(self, host: Host) -> None:
        """The host's own keys (made at its first boot) into known_hosts: SSH checks them strictly."""
        keys = host.exec("cat /etc/ssh/ssh_host_*_key.pub").stdout.split("\n")
        with self._lock:
            lines = [
                line
                for line in self.known_hosts.read_text().splitlines()
                if not line.startswith(f"{host.address} ")
            ]
            lines += [f"{host.address} {' '.join(k.split()[:2])}" for k in keys if k.strip()]
            self.known_hosts.write_text("\n".join(lines) + "\n")

    # --- cleanup -------------------------------------------------------------
    def close(self) -> None:
        """Removes every container, volume and the network this object (or an earlier run of the same
        name) started, the loopback forward and the key."""
        if self._forward is not None:
            self._forward.close()
            self._forward = None
        remove_leftovers(self.name)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        # Directories as a Debian system has them (extracting an entry sets the mode of what exists).
        dirs = sorted(
            {str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)}
        )
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = (
                tarfile.DIRTYPE,
                0o700 if d.startswith("root") else 0o755,
                time.time(),
            )
            tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, time.time()
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def remove_leftovers(name: str) -> None:
    """Everything labelled as belonging to network ``name``: containers (with their anonymous
    volumes), named volumes, then the network."""
    label = f"label={LABEL}={name}"
    containers = docker("ps", "-aq", "--filter", label).stdout.split()
    if containers:
        docker("rm", "-f", "-v", *containers, timeout=180)
    volumes = docker("volume", "ls", "-q", "--filter", label).stdout.split()
    if volumes:
        docker("volume", "rm", "-f", *volumes)
    networks = docker("network", "ls", "-q", "--filter", label).stdout.split()
    if networks:
        docker("network", "rm", *networks)
