"""pgmon on a bare Debian 13 server: Docker installed by the deploy, images pulled, a database elsewhere.

Two test hosts (tests/hosts) on an --internal network: ``proc``, a bare server with sshd and
python3 but no Docker, and ``db``, a PostgreSQL 17 server admitting only proc's address. pyinfra
runs here and reaches proc over real SSH at its own address (host keys checked), with
``pgmon_docker_install = "distro"``: Docker comes from Debian's packages (the hosts' only apt
source is a local copy of them), and the images from the network's registry, which
proc's /etc/docker/daemon.json names as Docker Hub's mirror, as an offline site would.
Discord and Telegram are capture servers on this machine at the network's gateway address.

Runs ``tests/hosts/prepare.sh`` (cached) on the lab's Docker engine, with the stand-in images of
tests/e2e/images/build_images.sh. The tests share one deployment and run in file order.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import time
import urllib.request

import pytest

from tests.hosts import HostDatabase, TestNetwork, load_manifest, split_image

from .capture import CaptureServer
from .lab import REPO, TESTED_IMAGES, Deployment, LabDatabase, Site
from .test_deploy import assert_ok, changed_operations, verification_lines

pytestmark = pytest.mark.e2e

NETWORK = "pgmon-bare"
# pgmon's defaults: a bare host has nothing else that could collide with them.
SITE = Site(base_dir="/opt/pgmon", project="pgmon", prometheus_port=9090, alertmanager_port=9093, grafana_port=3000)
DATABASE = LabDatabase("appdb", 5432, "appdb", "pgmon_app", "b@re:h0st/#%'\"1\\$HOME`x`", sslmode="require")
MEASURED: dict[str, str] = {}


def measured(name: str, value: str) -> None:
    MEASURED[name] = value
    print(f"\n{name}: {value}")


@pytest.fixture(scope="module")
def network(lab):
    """The lab's engine runs the hosts; their image, apt repository and registry come from the cache that
    tests/hosts/prepare.sh fills (about 80 s the first time, under a second after)."""
    started = time.monotonic()
    subprocess.run(["bash", str(REPO / "tests/hosts/prepare.sh")], check=True, capture_output=True, timeout=900)
    load_manifest()
    measured("tests/hosts/prepare.sh", f"{time.monotonic() - started:.1f}s")
    started = time.monotonic()
    net = TestNetwork.create(NETWORK, images=tuple(TESTED_IMAGES.values()))
    measured("network + registry + push of the images", f"{time.monotonic() - started:.1f}s")
    yield net
    started = time.monotonic()
    net.close()
    print(f"\ncleanup: {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="module")
def proc(network):
    started = time.monotonic()
    host = network.start_host("proc", kind="processing")
    measured("processing host up (boot + sshd)", f"{time.monotonic() - started:.1f}s")
    return host


@pytest.fixture(scope="module")
def db(network, proc):
    started = time.monotonic()
    host = network.start_host("db", kind="database", admit=[proc],
                              databases=[HostDatabase(DATABASE.dbname, DATABASE.user, DATABASE.password)])
    measured("database host up (boot + PostgreSQL configured)", f"{time.monotonic() - started:.1f}s")
    return host


@pytest.fixture(scope="module")
def channels(network):
    """Capture servers where the processing host's containers reach this machine: the gateway."""
    discord = CaptureServer("discord", network.gateway, f"4242/{secrets.token_hex(16)}")
    telegram = CaptureServer("telegram", network.gateway, f"4242:{secrets.token_hex(16)}")
    yield discord, telegram
    discord.close()
    telegram.close()


class BareHostDeployment(Deployment):
    """The lab's Deployment (project folder, group_data, pyinfra run), aimed at test hosts."""

    def __init__(self, proc, db, network, discord, telegram, **kwargs):
        super().__init__(proc, discord=discord, telegram=telegram, **kwargs)  # proc gives inventory_source()
        self.db_host = db
        self.gateway = network.gateway
        self.secrets["PGMON_E2E_DISCORD_URL"] = (
            f"http://{network.gateway}:{discord.port}/api/webhooks/{discord._server.secret}")

    def run(self, *args: str):
        """As the lab's, and each run's output kept in the project folder (pytest keeps it for a while)."""
        result = super().run(*args)
        (self.project.directory / f"pyinfra-{len(self.outputs)}.log").write_text(self.outputs[-1])
        return result

    def group_data(self, names: list[str]) -> dict:
        data = super().group_data(names)
        for entry in data["pgmon_databases"]:
            entry["host"] = self.db_host.address
        data["pgmon_telegram"]["api_url"] = f"http://{self.gateway}:{self.telegram.port}"
        data["pgmon_docker_install"] = "distro"
        return data


@pytest.fixture(scope="module")
def deployment(network, proc, db, channels, dashboard_server, tmp_path_factory):
    discord, telegram = channels
    return BareHostDeployment(proc, db, network, discord, telegram,
                              directory=tmp_path_factory.mktemp("bare-project"), dashboard_url=dashboard_server,
                              databases=(DATABASE,), site=SITE)


def host_fingerprint(proc) -> str:
    """Every file under base_dir (mode, owner, content) and every container, as the host sees them."""
    base = SITE.base_dir
    return proc.ssh(f"cd {base} && find . -printf '%p %m %U %G\\n' | sort && "
                    "find . -type f -exec sha256sum {} + | sort && "
                    "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort").stdout


def repo_versions(proc, *packages: str) -> dict[str, str]:
    """Versions the local apt repository (the host's only source) offers."""
    versions, package = {}, None
    for line in proc.exec("cat /repo/Packages").stdout.splitlines():
        if line.startswith("Package: "):
            package = line.split()[1]
        elif line.startswith("Version: ") and package in packages:
            versions[package] = line.split()[1]
    return versions


# ---------------------------------------------------------------- the hosts
def test_hosts_are_separate_bare_servers(network, proc, db):
    subnet = ipaddress.ip_network(network.subnet)
    assert proc.address != db.address and {ipaddress.ip_address(h.address) in subnet for h in (proc, db)} == {True}
    assert proc.ssh("hostname").stdout.strip() == "proc"
    assert proc.ssh("systemctl is-system-running").stdout.strip() == "running"
    assert proc.ssh("command -v docker", check=False).returncode != 0, "a bare host has no Docker"
    assert proc.ssh("python3 --version").stdout.startswith("Python 3.13")
    ids = {h.ssh("cat /etc/machine-id").stdout.strip() for h in (proc, db)}
    keys = {h.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in (proc, db)}
    assert len(ids) == 2 and len(keys) == 2, "each host has its own machine id and SSH host key"
    assert json.loads(proc.exec("cat /etc/docker/daemon.json").stdout)["registry-mirrors"] == [
        f"http://{network.registry_address}"]
    # No route out of the network: not even the Debian mirror.
    assert proc.exec("timeout 5 curl -sS -o /dev/null http://deb.debian.org/", check=False).returncode != 0


def test_database_host_admits_only_the_processing_host(db):
    assert "17" in db.ssh("pg_lsclusters -h").stdout
    # From its own address (not the processing host's) the server refuses the monitoring role.
    refused = db.exec(f"PGPASSFILE=/dev/stdin psql -h {db.address} -U {DATABASE.user} -d {DATABASE.dbname} "
                      "-c 'select 1'", input=f"*:*:*:*:{DATABASE.password}\n", check=False)
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr
    roles = db.psql(f"SELECT pg_has_role('{DATABASE.user}', 'pg_monitor', 'member')")
    assert roles.strip() == "t"


# ---------------------------------------------------------------- the deploy
def test_first_deploy_installs_docker_and_verifies(deployment, proc, db):
    deployment.configure([DATABASE.name])
    started = time.monotonic()
    output = assert_ok(deployment.run("-v"))
    measured("first deploy (Docker install, image pulls, stack, verification)", f"{time.monotonic() - started:.1f}s")
    assert "Install Docker from the distribution" in output  # pgmon's own step installed it
    for component in ("prometheus", "alertmanager", "grafana"):
        assert f"pgmon: {component}" in output and "ok" in output.split(f"pgmon: {component}")[1].split("\n")[0]
    assert {name: line.split()[0] for name, line in verification_lines(output).items()} == {DATABASE.name: "ok"}
    assert f"pg_up 1 at {db.address}:5432/{DATABASE.dbname}" in verification_lines(output)[DATABASE.name]


def test_docker_came_from_the_distribution_and_starts_at_boot(proc):
    installed = dict(line.split() for line in proc.ssh(
        "dpkg-query -W -f '${Package} ${Version}\\n' docker.io docker-cli docker-compose").stdout.splitlines())
    assert installed == repo_versions(proc, "docker.io", "docker-cli", "docker-compose")
    assert proc.ssh("systemctl is-enabled docker").stdout.strip() == "enabled"
    assert proc.ssh("systemctl is-active docker").stdout.strip() == "active"
    assert proc.ssh("docker compose version --short").stdout.strip()


def test_images_were_pulled_through_the_registry(network, proc):
    catalog = network.registry_catalog()
    log = network.registry_log()
    for image in TESTED_IMAGES.values():
        _, path, tag = split_image(image)
        assert tag in catalog.get(path, []), f"{image} not in the registry: {catalog}"
        # The manifest the registry serves names the image the host now has.
        request = urllib.request.Request(f"http://{network.registry_address}/v2/{path}/manifests/{tag}", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            config_digest = json.loads(response.read())["config"]["digest"]
        assert proc.ssh(f"docker image inspect -f '{{{{.Id}}}}' {image}").stdout.strip() == config_digest, image
        # ... and the host asked for it (registry access log: client address, request line).
        assert any(line.startswith(f"{proc.address} - ") and f"/v2/{path}/manifests/{tag} " in line
                   for line in log.splitlines()), f"no pull of {image} by {proc.address} in the registry log"


def test_alerts_from_the_host_reach_both_channels(deployment, proc):
    """A critical alert handed to the deployed Alertmanager reaches the capture servers on this machine."""
    discord, telegram = deployment.discord, deployment.telegram
    name = f"BareHostCheck{secrets.token_hex(3)}"
    body = json.dumps([{"labels": {"alertname": name, "severity": "critical", "database": DATABASE.name},
                        "annotations": {"summary": "pgmon bare-host test alert"}}])
    proc.ssh(f"curl -sSf -X POST -H 'Content-Type: application/json' --data-binary @- "
             f"http://127.0.0.1:{SITE.alertmanager_port}/api/v2/alerts", input=body)
    started = time.monotonic()
    discord.wait_for(lambda m: name in m.text, 60)
    telegram.wait_for(lambda m: name in m.text, 60)
    measured("alert from the host's Alertmanager to both capture servers", f"{time.monotonic() - started:.1f}s")


def test_rerun_reports_no_changes(deployment, proc):
    before = host_fingerprint(proc)
    started = time.monotonic()
    output = assert_ok(deployment.run("--diff"))  # a change would show what it was
    measured("no-change re-run", f"{time.monotonic() - started:.1f}s")
    assert changed_operations(output) == []
    assert verification_lines(output)[DATABASE.name].startswith("ok")
    assert host_fingerprint(proc) == before


def test_memory_of_the_hosts(network, proc, db):
    mib = 1 << 20
    for host in (proc, db):
        memory = host.memory()
        measured(f"memory of {host.name}", f"{memory['working_set'] / mib:.0f} MiB working set "
                                             f"({memory['usage'] / mib:.0f} MiB with page cache)")
    assert proc.memory()["working_set"] < 2048 * mib
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in MEASURED.items()))


def test_distro_install_works_where_recommends_are_off(network, db, deployment, tmp_path_factory):
    """Many servers run apt without Recommends (minimal images, hardening guides); pgmon must still work."""
    host = network.start_host("proc-norec", kind="processing")
    host.ssh("echo 'APT::Install-Recommends \"false\";' > /etc/apt/apt.conf.d/99no-recommends")
    db.admit(host)
    other = BareHostDeployment(host, db, network, deployment.discord, deployment.telegram,
                               directory=tmp_path_factory.mktemp("bare-norec"), dashboard_url=deployment.dashboard_url,
                               databases=(DATABASE,), site=SITE)
    other.configure([DATABASE.name])
    result = other.run()
    output = result.stdout + result.stderr
    assert_ok(result)
    assert verification_lines(output)[DATABASE.name].startswith("ok")
