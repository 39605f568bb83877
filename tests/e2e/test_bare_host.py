"""A server's whole life with pgmon, on bare Debian 13 servers: Docker installed by the deploy, images pulled,
a database elsewhere, a reboot, the network seen from a neighbour, HTTPS, a move to a new server, removal.

Test hosts (tests/hosts) on an --internal network: ``proc``, a bare server with sshd and python3 but no
Docker, and ``db``, a PostgreSQL 17 server admitting only proc's address; later ``probe`` (a neighbour),
``proc-new`` (the server moved to), ``proc-sudo`` and ``proc-norec``. pyinfra runs here and reaches each
over real SSH at its own address (host keys checked), with pgmon's defaults where the lab overrides them:
``pgmon_docker_install = "auto"`` (Debian 13: Docker from Debian's packages, the hosts' only apt source
being a local copy of them), Grafana over HTTPS on every address. Images come from the network's registry,
which each processing host's /etc/docker/daemon.json names as Docker Hub's mirror, as an offline site would.
Discord and Telegram are capture servers on this machine at the network's gateway address.

Runs ``tests/hosts/prepare.sh`` (cached) on the lab's Docker engine, with the stand-in images of
tests/e2e/images/build_images.sh. The tests share one deployment and run in file order.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shlex
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from tasks.grafana_key import VOLUME_CHECK_FILE
from tasks.isolation import rule as isolation_rule
from tasks.isolation import rules as isolation_rules
from tasks.isolation import timer_name as isolation_timer
from tasks.isolation import unit_name as isolation_unit
from tasks.render.api_auth import API_USER, PASSWORD_FILE
from tests.hosts import (
    HostDatabase,
    TestNetwork,
    _NotYet,
    load_manifest,
    split_image,
    wait_for,
)

from .capture import CaptureServer
from .lab import REPO, TESTED_IMAGES, Deployment, LabDatabase, Site
from .test_deploy import assert_ok, changed_operations, verification_lines

pytestmark = [pytest.mark.e2e, pytest.mark.test_hosts]

NETWORK = "pgmon-bare"
# pgmon's defaults: a bare host has nothing else that could collide with them.
SITE = Site(
    base_dir="/opt/pgmon",
    project="pgmon",
    prometheus_port=9090,
    alertmanager_port=9093,
    grafana_port=3000,
)
DATABASE = LabDatabase(
    "appdb", 5432, "appdb", "pgmon_app", "b@re:h0st/#%'\"1\\$HOME`x`", sslmode="require"
)
MEASURED: dict[str, str] = {}
CERTIFICATES: dict[str, str] = {}  # Grafana's self-signed certificate, as the first deploy made it


def measured(name: str, value: str) -> None:
    MEASURED[name] = value
    print(f"\n{name}: {value}")


@pytest.fixture(scope="module")
def network(lab):
    """The lab's engine runs the hosts; their image, apt repository and registry come from the cache that
    tests/hosts/prepare.sh fills (about 80 s the first time, under a second after)."""
    started = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "tests/hosts/prepare.sh")], check=True, capture_output=True, timeout=900
    )
    load_manifest()
    measured("tests/hosts/prepare.sh", f"{time.monotonic() - started:.1f}s")
    started = time.monotonic()
    net = TestNetwork.create(NETWORK, images=tuple(TESTED_IMAGES.values()))
    measured("network + registry + push of the images", f"{time.monotonic() - started:.1f}s")
    yield net
    started = time.monotonic()
    net.close()
    print(f"\ncleanup: {time.monotonic() - started:.1f}s")
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in MEASURED.items()))


@pytest.fixture(scope="module")
def proc(network):
    started = time.monotonic()
    host = network.start_host("proc", kind="processing")
    measured("processing host up (boot + sshd)", f"{time.monotonic() - started:.1f}s")
    return host


@pytest.fixture(scope="module")
def db(network, proc):
    started = time.monotonic()
    host = network.start_host(
        "db",
        kind="database",
        admit=[proc],
        databases=[HostDatabase(DATABASE.dbname, DATABASE.user, DATABASE.password)],
    )
    # Every connection the server sees is logged with its client's address (test_the_database_sees_...).
    host.psql(
        "ALTER SYSTEM SET log_connections = on;\nALTER SYSTEM SET log_line_prefix = '%m [%p] host=%h ';\n"
        "SELECT pg_reload_conf();"
    )
    measured(
        "database host up (boot + PostgreSQL configured)", f"{time.monotonic() - started:.1f}s"
    )
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
    """The lab's Deployment (project folder, group_data, pyinfra run), aimed at test hosts with pgmon's defaults:
    Docker as ``auto`` installs it, Grafana over HTTPS on every address. ``ssh_user`` other than root deploys
    with ``_sudo = True``, as the README says."""

    def __init__(self, proc, db, network, discord, telegram, ssh_user: str = "root", **kwargs):
        super().__init__(
            proc, discord=discord, telegram=telegram, **kwargs
        )  # proc gives inventory_source()
        self.ssh_user = ssh_user
        self.db_host = db
        self.gateway = network.gateway
        self.secrets["PGMON_E2E_DISCORD_URL"] = (
            f"http://{network.gateway}:{discord.port}/api/webhooks/{discord._server.secret}"
        )

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
        # pgmon's defaults, which the lab overrides: Grafana published on every address of the host, over HTTPS.
        data.pop("pgmon_grafana_bind_address")
        data.pop("pgmon_grafana_https")
        if self.ssh_user != "root":
            data["_sudo"] = True
        return data

    def configure(self, names: list[str], **overrides) -> None:
        self.project.write(
            self.lab.inventory_source(user=self.ssh_user), {**self.group_data(names), **overrides}
        )


@pytest.fixture(scope="module")
def deployment(network, proc, db, channels, dashboard_server, tmp_path_factory):
    discord, telegram = channels
    return BareHostDeployment(
        proc,
        db,
        network,
        discord,
        telegram,
        directory=tmp_path_factory.mktemp("bare-project"),
        dashboard_url=dashboard_server,
        databases=(DATABASE,),
        site=SITE,
    )


def deployment_on(
    host, first: BareHostDeployment, network, db, directory, ssh_user: str = "root"
) -> BareHostDeployment:
    """Another processing host deployed like ``first`` (same database, channels and dashboard), ready to run:
    the database admits it and its project folder holds the inventory and group_data."""
    db.admit(host)
    other = BareHostDeployment(
        host,
        db,
        network,
        first.discord,
        first.telegram,
        ssh_user=ssh_user,
        directory=directory,
        dashboard_url=first.dashboard_url,
        databases=(DATABASE,),
        site=SITE,
    )
    other.configure([DATABASE.name])
    return other


def host_fingerprint(proc) -> str:
    """Every file under base_dir (mode, owner, content) and every container, as the host sees them."""
    base = SITE.base_dir
    return proc.ssh(
        f"cd {base} && find . -printf '%p %m %U %G\\n' | sort && "
        "find . -type f -exec sha256sum {} + | sort && "
        "docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort"
    ).stdout


def bare_host_api_auth(component: str) -> str:
    """curl's credentials for the component's API, read by root from the file the deploy wrote (a test host's
    command line may show them; pgmon's own calls never do)."""
    password = shlex.quote(f"{SITE.base_dir}/{component}/secrets/{PASSWORD_FILE}")
    return f'-u "{API_USER}:$(cat {password})"'


def prometheus(proc, query: str, at: float | None = None) -> list[dict]:
    """An instant query, asked on the host itself: Prometheus listens on its loopback only."""
    params = [f"query={query}"] + ([f"time={at:.3f}"] if at is not None else [])
    arguments = " ".join(f"--data-urlencode {shlex.quote(p)}" for p in params)
    out = proc.ssh(
        f"curl -sSfG {bare_host_api_auth('prometheus')} {arguments} "
        f"http://127.0.0.1:{SITE.prometheus_port}/api/v1/query"
    ).stdout
    return json.loads(out)["data"]["result"]


def samples_before(proc, moment: float) -> int:
    """Samples of appdb's pg_up in the minute up to ``moment``: history Prometheus holds."""
    result = prometheus(proc, f'count_over_time(pg_up{{database="{DATABASE.name}"}}[1m])', moment)
    return int(float(result[0]["value"][1])) if result else 0


SELF_SIGNED = f"{SITE.base_dir}/grafana/tls/self-signed.crt"


def trusted(host, path: str = SELF_SIGNED) -> str:
    """The certificate a user trusts after copying it from the host (docs/security.md, "HTTPS for Grafana"), as a file here."""
    local = Path(tempfile.gettempdir()) / f"{host.container}-grafana.crt"
    local.write_text(host.exec(f"cat {path}").stdout)
    return str(local)


def grafana(
    deployment, host, method: str, path: str, verify: str | None = None, **kwargs
) -> requests.Response:
    """Grafana's API as a user's browser reaches it: https, the host's address, published port, admin password;
    the certificate checked against the one the host made (names included: the address is one of them)."""
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    return requests.request(
        method,
        f"https://{host.address}:{SITE.grafana_port}{path}",
        auth=auth,
        timeout=10,
        verify=verify or trusted(host),
        **kwargs,
    )


def grafana_answers(deployment, host) -> bool:
    try:
        return grafana(deployment, host, "GET", "/api/health").ok
    except requests.RequestException:
        return False


def save_dashboard(deployment, host, uid: str) -> dict:
    """A dashboard saved in Grafana's database as a user would: it must outlive what the test does."""
    body = {
        "dashboard": {"uid": uid, "title": f"Kept {uid}", "panels": [], "tags": ["kept"]},
        "overwrite": True,
    }
    response = grafana(deployment, host, "POST", "/api/dashboards/db", json=body)
    assert response.status_code == 200, response.text
    return grafana(deployment, host, "GET", f"/api/dashboards/uid/{uid}").json()["dashboard"]


def stack_is_back(host, services: int):
    """Every container of the project running and healthy (Docker's own health checks)."""
    out = host.ssh(
        "docker ps -a --filter label=com.docker.compose.project=pgmon --format '{{.Names}} {{.Status}}'",
        check=False,
    )
    lines = out.stdout.splitlines()
    if len(lines) == services and all(
        " Up " in f" {line} " and "(healthy)" in line for line in lines
    ):
        return True
    return _NotYet((out.stdout + out.stderr).strip().replace("\n", "; ")[-400:])


# Every TCP port of an address, from the host this runs on: {"open": [...], "silent": [...]} (silent: neither
# accepted nor refused within the deadline). A closed port answers with a reset at once on this network.
PORT_SCAN = r"""

import json, selectors, socket, sys, time
address, todo, found, silent = sys.argv[1], iter(range(1, 65536)), [], []
selector, pending = selectors.DefaultSelector(), {}
def more():
    for port in todo:
        s = socket.socket(); s.setblocking(False); s.connect_ex((address, port))
        pending[s] = (port, time.monotonic()); selector.register(s, selectors.EVENT_WRITE)
        if len(pending) >= 400:
            return
more()
while pending:
    for key, _ in selector.select(timeout=0.5):
        s = key.fileobj
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            found.append(pending[s][0])
        selector.unregister(s); s.close(); del pending[s]
    for s, (port, since) in list(pending.items()):
        if time.monotonic() - since > 3:
            silent.append(port); selector.unregister(s); s.close(); del pending[s]
    more()
print(json.dumps({"open": sorted(found), "silent": sorted(silent)}))
"""


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
    assert proc.address != db.address and {
        ipaddress.ip_address(h.address) in subnet for h in (proc, db)
    } == {True}
    assert proc.ssh("hostname").stdout.strip() == "proc"
    assert proc.ssh("systemctl is-system-running").stdout.strip() == "running"
    assert proc.ssh("command -v docker", check=False).returncode != 0, "a bare host has no Docker"
    assert proc.ssh("python3 --version").stdout.startswith("Python 3.13")
    ids = {h.ssh("cat /etc/machine-id").stdout.strip() for h in (proc, db)}
    keys = {h.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in (proc, db)}
    assert len(ids) == 2 and len(keys) == 2, "each host has its own machine id and SSH host key"
    assert json.loads(proc.exec("cat /etc/docker/daemon.json").stdout)["registry-mirrors"] == [
        f"http://{network.registry_address}"
    ]
    # No route out of the network: not even the Debian mirror.
    assert (
        proc.exec("timeout 5 curl -sS -o /dev/null http://deb.debian.org/", check=False).returncode
        != 0
    )


def test_database_host_admits_only_the_processing_host(db):
    assert "17" in db.ssh("pg_lsclusters -h").stdout
    # From its own address (not the processing host's) the server refuses the monitoring role.
    refused = db.exec(
        f"PGPASSFILE=/dev/stdin psql -h {db.address} -U {DATABASE.user} -d {DATABASE.dbname} "
        "-c 'select 1'",
        input=f"*:*:*:*:{DATABASE.password}\n",
        check=False,
    )
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr
    roles = db.psql(f"SELECT pg_has_role('{DATABASE.user}', 'pg_monitor', 'member')")
    assert roles.strip() == "t"


# ---------------------------------------------------------------- the deploy
def test_first_deploy_installs_docker_and_verifies(deployment, proc, db):
    deployment.configure([DATABASE.name])
    started = time.monotonic()
    output = assert_ok(deployment.run("-v"))
    measured(
        "first deploy (Docker install, image pulls, stack, verification)",
        f"{time.monotonic() - started:.1f}s",
    )
    assert (
        "Install Docker from the distribution" in output
    )  # pgmon's own step installed it (auto: Debian 13)
    assert "Make Grafana's self-signed certificate" in output
    CERTIFICATES["first"] = proc.exec(f"cat {SELF_SIGNED}").stdout
    for component in ("prometheus", "alertmanager", "grafana"):
        assert (
            f"pgmon: {component}" in output
            and "ok" in output.split(f"pgmon: {component}")[1].split("\n")[0]
        )
    assert {name: line.split()[0] for name, line in verification_lines(output).items()} == {
        DATABASE.name: "ok"
    }
    assert (
        f"pg_up 1 at {db.address}:5432/{DATABASE.dbname}"
        in verification_lines(output)[DATABASE.name]
    )


def test_docker_came_from_the_distribution_and_starts_at_boot(proc):
    installed = dict(
        line.split()
        for line in proc.ssh(
            "dpkg-query -W -f '${Package} ${Version}\\n' docker.io docker-cli docker-compose"
        ).stdout.splitlines()
    )
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
        request = urllib.request.Request(
            f"http://{network.registry_address}/v2/{path}/manifests/{tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            config_digest = json.loads(response.read())["config"]["digest"]
        assert (
            proc.ssh(f"docker image inspect -f '{{{{.Id}}}}' {image}").stdout.strip()
            == config_digest
        ), image
        # ... and the host asked for it (registry access log: client address, request line).
        assert any(
            line.startswith(f"{proc.address} - ") and f"/v2/{path}/manifests/{tag} " in line
            for line in log.splitlines()
        ), f"no pull of {image} by {proc.address} in the registry log"


def test_alerts_from_the_host_reach_both_channels(deployment, proc):
    """A critical alert handed to the deployed Alertmanager reaches the capture servers on this machine."""
    discord, telegram = deployment.discord, deployment.telegram
    name = f"BareHostCheck{secrets.token_hex(3)}"
    body = json.dumps(
        [
            {
                "labels": {"alertname": name, "severity": "critical", "database": DATABASE.name},
                "annotations": {"summary": "pgmon bare-host test alert"},
            }
        ]
    )
    proc.ssh(
        f"curl -sSf {bare_host_api_auth('alertmanager')} -X POST -H 'Content-Type: application/json' "
        f"--data-binary @- http://127.0.0.1:{SITE.alertmanager_port}/api/v2/alerts",
        input=body,
    )
    started = time.monotonic()
    discord.wait_for(lambda m: name in m.text, 60)
    telegram.wait_for(lambda m: name in m.text, 60)
    measured(
        "alert from the host's Alertmanager to both capture servers",
        f"{time.monotonic() - started:.1f}s",
    )


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
        measured(
            f"memory of {host.name}",
            f"{memory['working_set'] / mib:.0f} MiB working set "
            f"({memory['usage'] / mib:.0f} MiB with page cache)",
        )
    assert proc.memory()["working_set"] < 2048 * mib


# ---------------------------------------------------------------- reboot
def test_after_a_reboot_the_stack_comes_back_with_its_history_and_grafana_data(deployment, proc):
    kept = save_dashboard(deployment, proc, "pgmon-bare-reboot")
    wait_for(
        "a few samples of appdb before the reboot",
        lambda: samples_before(proc, time.time()) >= 3,
        60,
    )
    before = time.time()
    started = time.monotonic()
    proc.restart()  # systemd shuts everything down, the machine boots again; nobody runs pgmon
    services = len(deployment.databases) + 4
    wait_for(
        "the stack to come back by itself after the reboot",
        lambda: stack_is_back(proc, services),
        120,
        1,
    )
    measured("reboot until every container is healthy again", f"{time.monotonic() - started:.1f}s")
    assert proc.ssh("systemctl is-active docker").stdout.strip() == "active"
    assert (
        proc.exec(f"iptables -C DOCKER-USER {isolation_rule('pgmon')}", check=False).returncode == 0
    )
    # Before anyone re-runs pgmon: Prometheus kept what it had, and scrapes again.
    assert samples_before(proc, before) >= 3
    wait_for(
        "appdb scraped again (pg_up 1) after the reboot",
        lambda: [
            r
            for r in prometheus(proc, f'timestamp(pg_up{{database="{DATABASE.name}"}} == 1)')
            if float(r["value"][1]) > before
        ],
        60,
        1,
    )
    assert (
        grafana(deployment, proc, "GET", "/api/dashboards/uid/pgmon-bare-reboot").json()[
            "dashboard"
        ]
        == kept
    )
    output = assert_ok(deployment.run())
    assert changed_operations(output) == []
    assert verification_lines(output)[DATABASE.name].startswith("ok")


# ---------------------------------------------------------------- network exposure
@pytest.fixture(scope="module")
def probe(network):
    """Another machine on the network, with nothing of pgmon's: what a neighbour of the server sees."""
    return network.start_host("probe", kind="bare")


def test_from_another_host_only_ssh_and_grafana_answer(probe, proc, deployment):
    started = time.monotonic()
    scan = json.loads(probe.ssh(f"python3 - {proc.address}", input=PORT_SCAN, timeout=180).stdout)
    measured("scan of every TCP port of proc from probe", f"{time.monotonic() - started:.1f}s")
    # Prometheus (9090), Alertmanager (9093), node_exporter (9100) and every exporter (9187) among the refused.
    assert scan == {"open": [22, SITE.grafana_port], "silent": []}
    probe.exec("cat > /tmp/grafana.crt", input=proc.exec(f"cat {SELF_SIGNED}").stdout)
    health = probe.ssh(
        f"curl -sS --max-time 10 --cacert /tmp/grafana.crt "
        f"https://{proc.address}:{SITE.grafana_port}/api/health"
    ).stdout
    assert json.loads(health)["database"] == "ok"
    # On the host itself they listen on loopback only; no exporter or node_exporter port at all.
    listening = proc.ssh("ss -Htln | awk '{print $4}'").stdout.split()
    public = {a for a in listening if not a.startswith(("127.", "[::1]"))}
    assert public == {f"0.0.0.0:{SITE.grafana_port}", "0.0.0.0:22", "[::]:22"}, listening
    assert {f"127.0.0.1:{SITE.prometheus_port}", f"127.0.0.1:{SITE.alertmanager_port}"} <= set(
        listening
    )


# A neighbour on the same network that routes Docker's address range through the processing host, as anyone on
# that network can (ip route add 172.16.0.0/12 via <host>), and sends to 127.0.0.1 at the host's MAC (moby#41872):
# a network namespace inside proc joined to it by a veth pair, so its packets reach proc on an interface of its own,
# as a neighbour's would. Its own loopback stays down and route_localnet takes the replies from 127.0.0.1. (The
# test network itself drops packets for addresses outside its subnet, so another test host cannot try this.)
NEIGHBOUR = r"""
ip netns add lan && ip link add veth-host type veth peer name veth-lan && ip link set veth-lan netns lan
ip addr add 10.99.0.1/24 dev veth-host && ip link set veth-host up
ip netns exec lan sh -c 'ip addr add 10.99.0.2/24 dev veth-lan && ip link set veth-lan up &&
                         ip route add 172.16.0.0/12 via 10.99.0.1 && ip route add 127.0.0.0/8 via 10.99.0.1 &&
                         sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.veth-lan.route_localnet=1'
"""
NEIGHBOUR_SCAN = (
    r"""
for c in $(docker ps --format '{{.Names}}'); do
  for ip in $(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' $c); do
    for port in 3000 9090 9093 9100 9187; do  # every port of pgmon's containers, at every address, all at once
      { ip netns exec lan timeout 3 bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null && echo "$c:$port"; } &
    done
  done
done
"""
    # The ports published on the host's loopback, asked for at 127.0.0.1 itself.
    + f"for port in {SITE.prometheus_port} {SITE.alertmanager_port}; do"
    + r"""
  { ip netns exec lan timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && echo "127.0.0.1:$port"; } &
done; wait
"""
)


def test_a_neighbour_that_routes_to_the_containers_reaches_none_of_them(proc):
    """Docker before 28 (Debian 13 has 26) accepts such packets for published ports, even ones published on
    127.0.0.1, and translates a packet for 127.0.0.1 from any interface; pgmon's DOCKER-USER rules
    (tasks/isolation.py) drop both, also while the unit is stopped (Docker stopped with live-restore), and
    without them they get through."""
    unit, timer = isolation_unit("pgmon"), isolation_timer("pgmon")
    proc.exec(NEIGHBOUR)
    try:
        assert proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split() == []
        proc.exec(f"systemctl stop {unit}")
        assert proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split() == []
        # What a firewall reload leaves: no rule, kept so while the timer that puts them back is stopped.
        proc.exec(f"systemctl stop {timer}")
        for dropping in isolation_rules("pgmon"):
            proc.exec(f"iptables -D DOCKER-USER {dropping}")
        try:
            reached = set(proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split())
            # The first rule alone (all pgmon had before) still lets the packets for 127.0.0.1 through.
            proc.exec(f"iptables -I DOCKER-USER {isolation_rule('pgmon')}")
            loopback_only = set(proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split())
        finally:
            proc.exec(f"systemctl start {unit} && systemctl start {timer}")
        assert {
            "pgmon-prometheus:9090",
            "pgmon-alertmanager:9093",
            f"127.0.0.1:{SITE.prometheus_port}",
            f"127.0.0.1:{SITE.alertmanager_port}",
        } <= reached, reached
        assert loopback_only == {
            f"127.0.0.1:{SITE.prometheus_port}",
            f"127.0.0.1:{SITE.alertmanager_port}",
        }, loopback_only
        assert proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split() == []
    finally:
        proc.exec("ip netns del lan; ip link del veth-host", check=False)


def test_a_firewall_reload_loses_the_rules_for_half_a_minute_at_most(deployment, proc):
    """A firewall reload empties DOCKER-USER (``iptables -F``, as ``firewall-cmd --reload`` or
    ``netfilter-persistent reload`` do) or removes it (``nft flush ruleset``) while the containers keep running:
    pgmon's timer puts the rules back, before Docker's RETURN, with nobody restarting Docker or running pgmon. With
    no chain its runs succeed and wait for Docker to make it again. Its starts leave the journal quiet; a re-run of
    the deploy changes nothing."""
    service, timer = isolation_unit("pgmon"), isolation_timer("pgmon")
    present = " && ".join(f"iptables -C DOCKER-USER {r}" for r in isolation_rules("pgmon"))
    untouched = (
        "systemctl show -P ActiveEnterTimestampMonotonic docker && "
        "docker inspect -f '{{.Name}} {{.State.StartedAt}}' $(docker ps -q)"
    )
    before = proc.exec(untouched).stdout
    since = proc.exec("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()

    def ended_runs() -> int:
        return int(proc.exec(f"systemctl show -P InactiveEnterTimestampMonotonic {service}").stdout)

    def rules_back():
        return proc.exec(present, check=False).returncode == 0 or _NotYet(
            proc.exec("iptables -S DOCKER-USER").stdout
        )

    proc.exec("iptables -F DOCKER-USER")
    assert proc.exec(present, check=False).returncode != 0
    started = time.monotonic()
    wait_for("the timer to put the rules back after a flush", rules_back, 45, 0.5)
    measured("rules back after iptables -F DOCKER-USER", f"{time.monotonic() - started:.1f}s")
    # Docker's own RETURN, which the flush took too (Docker 26 adds it when it starts).
    proc.exec("iptables -A DOCKER-USER -j RETURN")

    # No chain at all: the jump to it and the chain removed, as nft flush ruleset leaves Docker's.
    proc.exec(
        "iptables -F DOCKER-USER && iptables -D FORWARD -j DOCKER-USER && iptables -X DOCKER-USER"
    )
    gone = ended_runs()
    wait_for("a run of the service with no DOCKER-USER chain", lambda: ended_runs() > gone, 45, 0.5)
    assert proc.exec(f"systemctl show -P Result {service}").stdout.strip() == "success"
    assert proc.exec(f"systemctl is-active {timer}").stdout.strip() == "active"
    # Docker makes its chain again (26: the chain, its RETURN, the jump at FORWARD's top).
    proc.exec(
        "iptables -N DOCKER-USER && iptables -A DOCKER-USER -j RETURN && iptables -I FORWARD -j DOCKER-USER"
    )
    started = time.monotonic()
    wait_for("the timer to put the rules back in the chain made again", rules_back, 45, 0.5)
    measured("rules back after the chain was made again", f"{time.monotonic() - started:.1f}s")
    listing = proc.exec("iptables -S DOCKER-USER").stdout.splitlines()
    assert listing[-1] == "-A DOCKER-USER -j RETURN" and len(listing) == 4, listing

    proc.exec(NEIGHBOUR)
    try:
        assert proc.exec(NEIGHBOUR_SCAN, timeout=120).stdout.split() == []
    finally:
        proc.exec("ip netns del lan; ip link del veth-host", check=False)
    assert proc.exec(untouched).stdout == before  # Docker not restarted, no container started again
    journal = proc.exec(f"journalctl -q -o cat -u {service} --since '{since}'").stdout.splitlines()
    assert journal and set(journal) == {
        "put back a missing DOCKER-USER rule of pgmon-pgmon (iptables)"
    }, journal
    assert changed_operations(assert_ok(deployment.run())) == []


def test_the_database_sees_connections_only_from_the_processing_host(db, proc, probe):
    log = db.exec("cat /var/log/postgresql/postgresql-17-main.log").stdout
    clients = {
        line.split("host=")[1].split()[0]
        for line in log.splitlines()
        if "connection authorized:" in line
    }
    clients.discard("[local]")  # the tests' own psql, as postgres on the server's socket
    assert clients == {proc.address}, (
        clients
    )  # never the exporters' own addresses, never another host
    monitoring = db.psql(
        f"SELECT DISTINCT client_addr FROM pg_stat_activity WHERE usename = '{DATABASE.user}'"
    )
    assert monitoring.split() == [proc.address]


# ---------------------------------------------------------------- HTTPS
def test_grafana_serves_https_with_a_self_signed_certificate_kept_across_runs(
    deployment, proc, probe
):
    certificate = proc.exec(f"cat {SELF_SIGNED}").stdout
    assert certificate == CERTIFICATES["first"], (
        "the certificate changed across re-runs or the reboot"
    )
    names = proc.exec(f"openssl x509 -noout -ext subjectAltName -in {SELF_SIGNED}").stdout
    assert f"IP Address:{proc.address}" in names and "DNS:proc" in names
    # The key: Grafana's alone (uid 472), never in any output of any run (-v, --diff included).
    listing = proc.exec(
        f"stat -c '%a %u %g %n' {SITE.base_dir}/grafana/tls {SITE.base_dir}/grafana/tls/*"
    ).stdout
    assert listing.split("\n")[:3] == [
        f"500 472 0 {SITE.base_dir}/grafana/tls",
        f"444 472 0 {SELF_SIGNED}",
        f"400 472 0 {SITE.base_dir}/grafana/tls/self-signed.key",
    ], listing
    key_lines = [
        line
        for line in proc.exec(
            f"cat {SITE.base_dir}/grafana/tls/self-signed.key"
        ).stdout.splitlines()
        if line and not line.startswith("-----")
    ]
    assert key_lines and not any(
        line in output for output in deployment.outputs for line in key_lines
    )
    # What verification said is what a user compares before trusting the certificate.
    fingerprint = (
        proc.exec(f"openssl x509 -noout -fingerprint -sha256 -in {SELF_SIGNED}")
        .stdout.split("=")[1]
        .strip()
    )
    assert f"SHA-256 {fingerprint}" in deployment.outputs[-1]
    # Plain HTTP on Grafana's port gets no login page: the password is never sent in clear.
    plain = probe.ssh(
        f"curl -sS --max-time 10 http://{proc.address}:{SITE.grafana_port}/login", check=False
    )
    assert "Client sent an HTTP request to an HTTPS server." in plain.stdout
    # A client that does not trust the certificate refuses it (no silent fallback).
    refused = probe.ssh(
        f"curl -sS --max-time 10 https://{proc.address}:{SITE.grafana_port}/api/health", check=False
    )
    assert refused.returncode == 60, (
        refused.stderr
    )  # curl: peer certificate cannot be authenticated


def test_verification_pins_the_certificate_pgmon_knows(deployment, proc):
    """Grafana serving anything but the certificate on the host (here: the files replaced by hand, Grafana not
    restarted) fails verification, naming it; Grafana restarted on the files, it passes."""
    tls = f"{SITE.base_dir}/grafana/tls"
    proc.exec(
        f"cp -a {tls}/self-signed.crt /root/kept.crt && cp -a {tls}/self-signed.key /root/kept.key && "
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 -subj /CN=other "
        f"-keyout {tls}/self-signed.key -out {tls}/self-signed.crt 2>/dev/null && "
        f"chown 472:0 {tls}/self-signed.* && chmod 0400 {tls}/self-signed.key"
    )
    try:
        result = deployment.run("--data", "pgmon_verify_timeout_seconds=5")
        output = result.stdout + result.stderr
        assert (
            result.returncode != 0 and "does not present the certificate pgmon installed" in output
        ), output[-3000:]
    finally:
        proc.exec(
            f"mv -f /root/kept.crt {tls}/self-signed.crt && mv -f /root/kept.key {tls}/self-signed.key"
        )
    assert (
        changed_operations(assert_ok(deployment.run())) == []
    )  # Grafana kept serving the certificate put back


@pytest.fixture
def own_certificate(tmp_path, proc):
    """A private CA and a certificate it signed for proc's address, as an organisation would issue one."""

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=Example Org CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=grafana.example.org",
        "-keyout",
        "grafana.key",
        "-out",
        "grafana.csr",
    )
    (tmp_path / "ext").write_text(f"subjectAltName=DNS:grafana.example.org,IP:{proc.address}\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "grafana.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext",
        "-out",
        "grafana.crt",
    )
    (tmp_path / "chain.crt").write_text(
        (tmp_path / "grafana.crt").read_text() + (tmp_path / "ca.crt").read_text()
    )
    return tmp_path


def test_grafana_serves_the_users_own_certificate_then_the_kept_self_signed_one(
    deployment, proc, own_certificate
):
    files = {
        "cert_file": str(own_certificate / "chain.crt"),
        "key_file": str(own_certificate / "grafana.key"),
    }
    deployment.configure([DATABASE.name], pgmon_grafana_certificate=files)
    output = assert_ok(deployment.run("-vvv", "--diff"))
    assert (
        verification_lines(output)[DATABASE.name].startswith("ok")
        and "your certificate for" in output
    )
    key = (own_certificate / "grafana.key").read_text()
    assert not any(line in output for line in key.splitlines() if not line.startswith("-----"))
    assert proc.exec(
        f"stat -c '%a %u %g' {SITE.base_dir}/grafana/tls/grafana.key"
    ).stdout.split() == ["400", "472", "0"]
    # A browser that trusts the organisation's CA trusts Grafana, by address.
    health = grafana(deployment, proc, "GET", "/api/health", verify=str(own_certificate / "ca.crt"))
    assert health.json()["database"] == "ok"
    assert changed_operations(assert_ok(deployment.run())) == []
    # Back to the default: the self-signed certificate made at the first deploy serves again.
    deployment.configure([DATABASE.name])
    assert_ok(deployment.run())
    assert proc.exec(f"ls {SITE.base_dir}/grafana/tls").stdout.split() == [
        "self-signed.crt",
        "self-signed.key",
    ]
    assert proc.exec(f"cat {SELF_SIGNED}").stdout == CERTIFICATES["first"]
    assert grafana(deployment, proc, "GET", "/api/health").json()["database"] == "ok"


# ---------------------------------------------------------------- moving to a new server, removing pgmon
def run_script(deployment, script: str, *args: str) -> str:
    """``pyinfra inventory.py <script>`` in the deployment's project folder, as a user runs it; its output."""
    result = deployment.project.pyinfra(*args, deploy=script)
    output = result.stdout + result.stderr
    deployment.outputs.append(output)
    return assert_ok(result)


def test_backup_then_restore_onto_a_bare_host_moves_history_and_grafana(
    network, deployment, proc, db, tmp_path_factory
):
    kept = grafana(deployment, proc, "GET", "/api/dashboards/uid/pgmon-bare-reboot").json()[
        "dashboard"
    ]
    moment = time.time()  # history up to here is in the backup
    wait_for("a few samples before the backup", lambda: samples_before(proc, moment) >= 3, 60)
    started = time.monotonic()
    output = run_script(deployment, "backup.py")
    measured(
        "backup (snapshot, Grafana stopped for its copy, archive to this machine)",
        f"{time.monotonic() - started:.1f}s",
    )
    # The default folder: in the controller's home, outside the repository pyinfra runs in.
    backups = Path.home() / "pgmon-backups"
    (archive,) = [a for a in backups.glob("pgmon-*.tar.gz") if a.stat().st_mtime >= moment]
    assert f"backup written to {archive} (" in output
    assert (
        archive.stat().st_mode & 0o777 == 0o600
    )  # Grafana's database holds the admin password's hash
    members = subprocess.run(
        ["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "pgmon-backup.json" in members and "grafana/grafana.db" in members
    assert f"grafana/{VOLUME_CHECK_FILE}" in members  # which key Grafana's data needs, not the key
    assert any(m.startswith("prometheus/") and m.endswith("/meta.json") for m in members)
    # Nothing left on the host: no snapshot in Prometheus's volume, no copy in /var/tmp; Grafana back up.
    assert proc.exec("docker exec pgmon-prometheus ls /prometheus/snapshots").stdout.split() == []
    assert "pgmon-backup" not in proc.exec("ls -a /var/tmp").stdout
    wait_for("Grafana healthy after the backup", lambda: grafana_answers(deployment, proc), 60)

    new = network.start_host("proc-new", kind="processing")  # bare: no Docker
    moved = deployment_on(new, deployment, network, db, tmp_path_factory.mktemp("bare-moved"))
    started = time.monotonic()
    output = run_script(moved, "restore.py", "--data", f"pgmon_restore_from={archive}")
    assert "Install Docker from the distribution" in output and "pgmon: restored" in output
    # The new site's own key cannot read the restored Grafana data: refused, changing nothing; the old one can.
    refused = moved.run()
    assert refused.returncode != 0 and "holds another key than the one Grafana's data" in (
        refused.stdout + refused.stderr
    )
    assert new.exec("docker ps -aq").stdout.split() == []
    key = "PGMON_E2E_GRAFANA_SECRET_KEY"
    moved.secrets[key] = deployment.secrets[key]
    output = assert_ok(moved.run())
    measured(
        "restore onto a bare host (Docker install included) and deploy",
        f"{time.monotonic() - started:.1f}s",
    )
    assert verification_lines(output)[DATABASE.name].startswith("ok")
    # The same history up to the backup, the same Grafana state (its admin password is the new site's own).
    assert samples_before(new, moment) == samples_before(proc, moment) >= 3
    assert (
        grafana(moved, new, "GET", "/api/dashboards/uid/pgmon-bare-reboot").json()["dashboard"]
        == kept
    )
    assert changed_operations(assert_ok(moved.run())) == []
    # A host that has pgmon's data refuses a restore, changing nothing.
    refused = moved.project.pyinfra("--data", f"pgmon_restore_from={archive}", deploy="restore.py")
    assert (
        refused.returncode != 0
        and "a restore only goes onto a host without them" in refused.stderr + refused.stdout
    )
    new.stop()
    archive.unlink()  # the suite's, in this machine's home


def test_uninstall_keeps_the_data_for_a_later_deploy_unless_asked(deployment, proc):
    kept = grafana(deployment, proc, "GET", "/api/dashboards/uid/pgmon-bare-reboot").json()[
        "dashboard"
    ]
    moment = time.time()
    wait_for("a few samples before the uninstall", lambda: samples_before(proc, moment) >= 3, 60)
    started = time.monotonic()
    output = run_script(deployment, "uninstall.py")
    measured("uninstall", f"{time.monotonic() - started:.1f}s")
    assert changed_operations(output) == [
        "Uninstall pgmon | Stop and remove pgmon containers",
        "Uninstall pgmon | Remove pgmon's isolation rule",
        "Uninstall pgmon | Remove pgmon files",
    ]
    project = "--filter label=com.docker.compose.project=pgmon"
    assert (
        proc.exec(f"docker ps -aq {project}; docker network ls -q {project}").stdout.split() == []
    )
    assert proc.exec(f"test -e {SITE.base_dir}", check=False).returncode != 0
    volumes = proc.exec(f"docker volume ls -q {project}").stdout.split()
    assert sorted(volumes) == [
        "pgmon_alertmanager-data",
        "pgmon_grafana-data",
        "pgmon_prometheus-data",
    ]
    assert "kept the data volumes" in output
    assert (
        proc.exec(f"test -e /etc/systemd/system/{isolation_unit('pgmon')}", check=False).returncode
        != 0
    )
    assert "pgmon-pgmon" not in proc.exec("iptables -S DOCKER-USER").stdout
    assert proc.exec("systemctl is-active docker").stdout.strip() == "active"  # Docker itself stays
    assert changed_operations(run_script(deployment, "uninstall.py")) == []  # nothing left to do

    output = assert_ok(deployment.run())
    assert verification_lines(output)[DATABASE.name].startswith("ok")
    assert samples_before(proc, moment) >= 3
    assert (
        grafana(deployment, proc, "GET", "/api/dashboards/uid/pgmon-bare-reboot").json()[
            "dashboard"
        ]
        == kept
    )

    output = run_script(deployment, "uninstall.py", "--data", "pgmon_uninstall_delete_data=true")
    assert "Uninstall pgmon | Remove pgmon data volumes" in changed_operations(output)
    assert proc.exec(f"docker volume ls -q {project}").stdout.split() == []
    assert proc.exec(f"test -e {SITE.base_dir}", check=False).returncode != 0


# ---------------------------------------------------------------- other hosts
def test_a_sudo_user_deploys_where_an_engine_runs_without_compose(
    network, db, deployment, tmp_path_factory
):
    """An admin account with sudo (``_sudo = True``) on a host whose Docker Engine has no Compose v2: pgmon adds
    Compose only, from the distribution, and leaves the engine as it was."""
    host = network.start_host("proc-sudo", kind="processing")
    host.add_admin("admin")
    host.exec(
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
        "apt-get install -y -q --no-install-recommends docker.io docker-cli >/dev/null",
        timeout=300,
    )
    engine = host.exec("docker version --format '{{.Server.Version}}'").stdout.strip()
    assert engine and host.exec("docker compose version", check=False).returncode != 0
    other = deployment_on(
        host, deployment, network, db, tmp_path_factory.mktemp("bare-sudo"), ssh_user="admin"
    )
    started = time.monotonic()
    output = assert_ok(other.run())
    measured(
        "deploy as a sudo user where Compose v2 was missing", f"{time.monotonic() - started:.1f}s"
    )
    assert (
        "Install Compose v2 from the distribution" in output and "Install Docker from" not in output
    )
    assert verification_lines(output)[DATABASE.name].startswith("ok")
    assert host.exec("docker version --format '{{.Server.Version}}'").stdout.strip() == engine
    assert host.exec("dpkg-query -W -f '${Status}' docker-compose").stdout == "install ok installed"
    assert changed_operations(assert_ok(other.run())) == []
    journal = host.exec("journalctl --no-pager -o cat").stdout
    assert "Accepted publickey for admin" in journal
    assert any(
        line.strip().startswith("admin : ") and "USER=root" in line for line in journal.splitlines()
    )
    host.stop()  # its part is done; the machine has two CPUs


def test_distro_install_works_where_recommends_are_off(network, db, deployment, tmp_path_factory):
    """Many servers run apt without Recommends (minimal images, hardening guides); pgmon must still work."""
    host = network.start_host("proc-norec", kind="processing")
    host.ssh("echo 'APT::Install-Recommends \"false\";' > /etc/apt/apt.conf.d/99no-recommends")
    other = deployment_on(host, deployment, network, db, tmp_path_factory.mktemp("bare-norec"))
    result = other.run()
    output = result.stdout + result.stderr
    assert_ok(result)
    assert verification_lines(output)[DATABASE.name].startswith("ok")
    host.stop()
