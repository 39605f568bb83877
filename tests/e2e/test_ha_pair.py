"""An HA pair (docs/cluster.md): two bare Debian processing hosts deployed from one inventory, their Alertmanagers
one gossip cluster, one incident one message per channel, also while one member is down.

Test hosts (tests/hosts) on an --internal network, as in test_bare_host.py: ``ha1`` and ``ha2`` (processing),
``db`` (PostgreSQL admitting both) and ``probe``, a neighbour that is no member. pyinfra reaches the members over
real SSH by their addresses, which are their inventory names and so their cluster addresses. Discord and Telegram
(two chats) are capture servers on this machine at the network's gateway. The tests share one deployment and run
in file order.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import time

import pytest

from tests.hosts import HostDatabase, TestNetwork, inventory_source, load_manifest, wait_for

from .capture import CaptureServer
from .lab import REPO, SCRAPE_SECONDS, TESTED_IMAGES
from .test_bare_host import DATABASE, SITE, BareHostDeployment, bare_host_api_auth, stack_is_back
from .test_deploy import assert_ok, changed_operations
from .test_remote_write import PASSWORD_ENV, USER, VICTORIA, Victoria, largest_gap

pytestmark = pytest.mark.e2e

NETWORK = "pgmon-ha"
CLUSTER = "pgmon-ha"
CHATS = ("-100987654321", "-100123456789")
# A second member's copy of a notification would come after Alertmanager's peer timeout (15 s: the second in
# line waits that long for the first's notification log) plus a group_wait and an evaluation: within this.
DUPLICATE_WINDOW = 20
WAIT = 90
INCIDENTS = int(os.environ.get("PGMON_HA_INCIDENTS", "2"))
SERVICES = 5  # prometheus, alertmanager, grafana, node-exporter, one exporter
MEASURED: dict[str, str] = {}
OUTAGE: dict[
    str, float
] = {}  # when one member was stopped and back (Unix seconds), for the store's check


def measured(name: str, value: str) -> None:
    MEASURED[name] = value
    print(f"\n{name}: {value}")


@pytest.fixture(scope="module")
def network(lab):
    subprocess.run(
        ["bash", str(REPO / "tests/hosts/prepare.sh")], check=True, capture_output=True, timeout=900
    )
    load_manifest()
    net = TestNetwork.create(NETWORK, images=tuple(TESTED_IMAGES.values()))
    yield net
    net.close()
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in MEASURED.items()))


@pytest.fixture(scope="module")
def hosts(network):
    """ha1 and ha2, the pair; ha3, the member that joins and leaves."""
    started = time.monotonic()
    booted = network.start_hosts(3, prefix="ha")
    measured("three processing hosts up", f"{time.monotonic() - started:.1f}s")
    return booted


@pytest.fixture(scope="module")
def members(hosts):
    return hosts[:2]


@pytest.fixture(scope="module")
def third(hosts):
    return hosts[2]


@pytest.fixture(scope="module")
def db(network, hosts):
    return network.start_host(
        "db",
        kind="database",
        admit=hosts,
        databases=[HostDatabase(DATABASE.dbname, DATABASE.user, DATABASE.password)],
    )


class Group:
    """What BareHostDeployment reads of its host: the inventory, here every member in group pgmon_hosts."""

    def __init__(self, hosts):
        self.hosts = hosts

    def inventory_source(self, user: str = "root") -> str:
        return inventory_source(self.hosts, user=user)


@pytest.fixture(scope="module")
def store(network, tmp_path_factory):
    """A real VictoriaMetrics both members write to, on this machine at the network's gateway."""
    if not VICTORIA.exists():
        pytest.fail(f"{VICTORIA} is missing: run tests/e2e/prepare_machine.sh")
    victoria = Victoria(
        tmp_path_factory.mktemp("ha-victoria"),
        "st0re:" + secrets.token_hex(8) + "'#%$",
        address=network.gateway,
        port=18429,
    )
    victoria.start()
    yield victoria
    victoria.stop()


@pytest.fixture(scope="module")
def pair(network, members, db, store, dashboard_server, tmp_path_factory):
    discord = CaptureServer("discord", network.gateway, f"4242/{secrets.token_hex(16)}")
    telegram = CaptureServer("telegram", network.gateway, f"4242:{secrets.token_hex(16)}")
    deployment = BareHostDeployment(
        Group(members),
        db,
        network,
        discord,
        telegram,
        directory=tmp_path_factory.mktemp("ha-project"),
        dashboard_url=dashboard_server,
        databases=(DATABASE,),
        site=SITE,
    )
    deployment.secrets["PGMON_E2E_TELEGRAM_CHAT"] = ",".join(CHATS)
    deployment.secrets[PASSWORD_ENV] = store.password
    deployment.store = store
    configure_group(deployment, members)
    yield deployment
    discord.close()
    telegram.close()


def configure_group(pair, hosts) -> None:
    """The project's inventory lists ``hosts``, group_data the cluster and the store."""
    pair.lab.hosts = hosts
    pair.configure(
        [DATABASE.name],
        pgmon_cluster={"name": CLUSTER},
        pgmon_remote_write=[
            {
                "name": "victoria",
                "url": f"{pair.store.url}/api/v1/write",
                "username": USER,
                "password_env": PASSWORD_ENV,
                "query_url": pair.store.url,
            }
        ],
    )


def containers(host) -> dict[str, str]:
    """Each pgmon container's id and start time: a restart changes the one, a re-creation both."""
    out = host.ssh(
        "for c in $(docker ps -q --filter label=com.docker.compose.project=pgmon); do "
        "docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}' $c; done"
    ).stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def alertmanager_api(member, method: str, path: str, body: str | None = None) -> dict | list:
    """Alertmanager's API on the member's loopback, as root there reads its password."""
    data = "-H 'Content-Type: application/json' --data-binary @-" if body is not None else ""
    out = member.ssh(
        f"curl -sSf {bare_host_api_auth('alertmanager')} -X {method} {data} "
        f"http://127.0.0.1:{SITE.alertmanager_port}{path}",
        input=body,
    ).stdout
    return json.loads(out)


def gossip_peers(member) -> set[str]:
    status = alertmanager_api(member, "GET", "/api/v2/status")["cluster"]
    return (
        {p["address"] for p in status.get("peers") or []} if status["status"] == "ready" else set()
    )


def messages(pair, status: str) -> dict[str, int]:
    """PostgresDown messages about appdb with ``status``, counted per channel and Telegram chat."""
    counts = {"discord": 0, **{f"telegram {chat}": 0 for chat in CHATS}}

    def about(m) -> bool:
        return "PostgresDown" in m.text and DATABASE.name in m.text and f"[{status}" in m.text

    counts["discord"] = sum(about(m) for m in pair.discord.received)
    for chat in CHATS:
        counts[f"telegram {chat}"] = sum(
            about(m) and str(m.body["chat_id"]) == chat for m in pair.telegram.received
        )
    return counts


def arrived(pair, status: str, count: int = 1) -> float:
    """Waits for the ``count``-th ``status`` message at every channel and chat, failing as soon as one has more;
    returns the seconds waited."""
    started = time.monotonic()

    def all_there():
        counts = messages(pair, status)
        assert all(n <= count for n in counts.values()), f"more than {count} {status}: {counts}"
        return all(n == count for n in counts.values())

    wait_for(f"{status} PostgresDown message number {count} at every channel", all_there, WAIT, 0.5)
    return time.monotonic() - started


def no_more(pair, status: str, count: int = 1) -> None:
    """Through the window in which a second member's copy would come, every channel keeps ``count``."""
    deadline = time.monotonic() + DUPLICATE_WINDOW
    while time.monotonic() < deadline:
        counts = messages(pair, status)
        assert all(n == count for n in counts.values()), f"not {count} {status} messages: {counts}"
        time.sleep(0.5)


def exactly_once(pair, status: str) -> float:
    """The message at every channel and chat, and no copy; the seconds it took to arrive."""
    waited = arrived(pair, status)
    no_more(pair, status)
    return waited


def incident(db, pair) -> None:
    pair.discord.clear()
    pair.telegram.clear()
    db.exec("systemctl stop postgresql")


def recovery(db) -> None:
    db.exec("systemctl start postgresql")


def members_gossip(members) -> bool:
    addresses = {f"{m.address}:9094" for m in members}
    return all(gossip_peers(m) == addresses for m in members)


def test_one_inventory_deploys_both_members_and_each_alertmanager_sees_the_other(pair, members):
    started = time.monotonic()
    output = assert_ok(pair.run())
    measured("group deploy, 2 hosts (Docker installed)", f"{time.monotonic() - started:.1f}s")
    gossiping = re.findall(rf"cluster +ok +{CLUSTER}: all 2 members gossip", output)
    assert len(gossiping) == 2, output[-4000:]
    assert output.count("2 Alertmanagers connected") == 2
    assert len(re.findall(r"store victoria +ok", output)) == 2
    assert members_gossip(members)


def test_a_rerun_of_the_group_changes_nothing(pair):
    started = time.monotonic()
    output = assert_ok(pair.run())
    measured("no-change re-run, 2 hosts", f"{time.monotonic() - started:.1f}s")
    assert changed_operations(output) == []


def test_only_the_members_reach_alertmanager_and_its_gossip(network, members):
    """Published on each member's address, Alertmanager's API and gossip port answer the other member and no
    neighbour (tasks/isolation.py)."""
    probe = network.start_host("probe", kind="bare")
    first, second = members

    def reach(source, port: int) -> bool:
        return (
            source.exec(
                f"timeout 3 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{first.address}/{port}')}",
                check=False,
            ).returncode
            == 0
        )

    for port in (SITE.alertmanager_port, 9094):
        assert reach(second, port), f"the other member cannot reach {first.address}:{port}"
        assert not reach(probe, port), f"a neighbour reaches {first.address}:{port}"


def test_each_incident_is_one_message_per_channel_and_one_resolved(pair, members, db):
    """PGMON_HA_INCIDENTS incidents one after the other (the benchmark's 20; 2 in the test run): as many
    FIRING and RESOLVED messages at Discord and each Telegram chat."""
    incident(db, pair)
    times = [arrived(pair, "FIRING")]
    recovery(db)
    arrived(pair, "RESOLVED")
    for number in range(2, INCIDENTS + 1):
        db.exec("systemctl stop postgresql")
        times.append(arrived(pair, "FIRING", number))
        recovery(db)
        arrived(pair, "RESOLVED", number)
    no_more(pair, "FIRING", INCIDENTS)
    no_more(pair, "RESOLVED", INCIDENTS)
    counts = messages(pair, "FIRING")
    measured(
        f"{INCIDENTS} incidents, both members up",
        f"{min(counts.values())}-{max(counts.values())} FIRING messages per channel and chat; "
        f"to every channel in {min(times):.1f}-{max(times):.1f}s",
    )


def test_with_one_member_stopped_alerts_arrive_once_and_its_silences_reach_it_when_back(
    pair, members, db
):
    first, second = members
    OUTAGE["from"] = time.time()
    second.ssh(
        "docker stop $(docker ps -q --filter label=com.docker.compose.project=pgmon)", timeout=120
    )
    incident(db, pair)
    measured(
        "incident to every channel, one member stopped", f"{exactly_once(pair, 'FIRING'):.1f}s"
    )
    # A silence made during the outage, on the member that is up.
    now = time.time()
    silence = {
        "matchers": [{"name": "alertname", "value": "HaPairMaintenance", "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        "createdBy": "test_ha_pair",
        "comment": "made while a member was down",
    }
    silence_id = alertmanager_api(first, "POST", "/api/v2/silences", json.dumps(silence))[
        "silenceID"
    ]
    second.ssh(
        "docker start $(docker ps -aq --filter label=com.docker.compose.project=pgmon)",
        timeout=120,
    )
    wait_for("the stopped member's stack back", lambda: stack_is_back(second, SERVICES), 120)
    OUTAGE["to"] = time.time()
    wait_for("both members gossiping again", lambda: members_gossip(members), 90, 1)
    known = {s["id"] for s in alertmanager_api(second, "GET", "/api/v2/silences")}
    assert silence_id in known
    # The member back evaluates the same incident and sends it to both Alertmanagers: no second message.
    no_more(pair, "FIRING")
    recovery(db)
    exactly_once(pair, "RESOLVED")


def test_the_store_holds_one_series_per_database_without_a_gap_across_the_outage(store):
    """Both members write appdb's pg_up to the store as one series (the replica label dropped), which
    VictoriaMetrics deduplicates to one sample per scrape interval; the member that stayed up covered the
    other's outage."""
    series = f'pg_up{{database="{DATABASE.name}"}}'
    assert len(store.query(series)) == 1
    during = store.query(f"count_over_time({series}[60s])")
    per_minute = float(during[0]["value"][1])
    assert per_minute <= 1.25 * 60 / SCRAPE_SECONDS, (
        f"{per_minute} samples a minute: not deduplicated"
    )
    gap = largest_gap(store.timestamps(series, OUTAGE["from"] - 10, OUTAGE["to"] + 10))
    measured("largest gap in the store across one member's outage", f"{gap:.1f}s")
    assert gap <= 3 * SCRAPE_SECONDS


def test_with_one_member_cut_from_the_network_alerts_arrive_once(network, pair, members, db):
    """The whole test host unplugged, its stack running: the other member notifies alone; plugged back, the
    member's gossip catches up and it sends nothing again."""
    first, second = members
    subprocess.run(["docker", "network", "disconnect", network.name, second.container], check=True)
    try:
        incident(db, pair)
        measured(
            "incident to every channel, one member cut off", f"{exactly_once(pair, 'FIRING'):.1f}s"
        )
    finally:
        subprocess.run(
            [
                "docker",
                "network",
                "connect",
                "--ip",
                second.address,
                network.name,
                second.container,
            ],
            check=True,
        )
    wait_for("both members gossiping again", lambda: members_gossip(members), 90, 1)
    no_more(pair, "FIRING")
    recovery(db)
    exactly_once(pair, "RESOLVED")


def test_a_third_member_joins_without_restarting_the_others(pair, members, third):
    before = {m.name: containers(m) for m in members}
    configure_group(pair, [*members, third])
    started = time.monotonic()
    output = assert_ok(pair.run())
    measured("adding a third member (Docker installed there)", f"{time.monotonic() - started:.1f}s")
    assert len(re.findall(rf"cluster +ok +{CLUSTER}: all 3 members gossip", output)) == 3, output[
        -4000:
    ]
    assert {m.name: containers(m) for m in members} == before
    started = time.monotonic()
    assert changed_operations(assert_ok(pair.run())) == []
    measured("no-change re-run, 3 hosts", f"{time.monotonic() - started:.1f}s")


def test_removing_it_leaves_a_pair_that_alerts_once(pair, members, third, db):
    """The member leaving is uninstalled (its Alertmanager leaves the cluster), then the group deployed
    without it."""
    result = pair.project.pyinfra("--limit", third.address, deploy="uninstall.py")
    assert_ok(result)
    configure_group(pair, members)
    output = assert_ok(pair.run())
    assert len(re.findall(rf"cluster +ok +{CLUSTER}: all 2 members gossip", output)) == 2
    assert members_gossip(members)
    incident(db, pair)
    exactly_once(pair, "FIRING")
    recovery(db)
    exactly_once(pair, "RESOLVED")
