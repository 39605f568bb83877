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
from functools import partial

import pytest

from tests.hosts import HostDatabase, TestNetwork, inventory_source, load_manifest, wait_for

from .capture import CaptureServer
from .grafana_queries import Dashboard
from .lab import (
    FLEET_DASHBOARD,
    POSTGRES_DOWN_FOR,
    REPO,
    SCRAPE_SECONDS,
    TESTED_IMAGES,
    LabDatabase,
)
from .test_bare_host import DATABASE, SITE, BareHostDeployment, bare_host_api_auth, stack_is_back
from .test_deploy import assert_ok, changed_operations
from .test_incidents import silence_command
from .test_remote_write import (
    PASSWORD_ENV,
    USER,
    VICTORIA,
    StoreQueries,
    Victoria,
    largest_gap,
)

pytestmark = [pytest.mark.e2e, pytest.mark.test_hosts]

NETWORK = "pgmon-ha"
CLUSTER = "pgmon-ha"
CHATS = ("-100987654321", "-100123456789")
# The group's alert timing: evaluations every 4 s, group_wait 4 s and group_interval 12 s, so that the members
# flush a group on a grid of 4 s steps (settings/cluster.py, flush_step_ms) and a peer timeout of 6 s is half a
# step off it: the second member in the cluster's order looks for the first's entry in the shared notification
# log 2 s from any flush of the first, time for the first's message to be delivered and its entry gossiped. (On
# the lab's 2 s steps that margin was 1 s, and a member back from a stop sent a resolution twice in a CI run
# with the machine's two cores busy.)
EVALUATION_SECONDS = 4
ALERT_TIMING = {
    "postgres_down_for": POSTGRES_DOWN_FOR,
    "group_wait": "4s",
    "group_interval": "12s",
    "repeat_interval": "1h",
}
# A copy would come within the peer timeout, a group_wait and two evaluations, and a margin.
PEER_TIMEOUT = 6
DUPLICATE_WINDOW = PEER_TIMEOUT + 4 + 2 * EVALUATION_SECONDS + 2
WAIT = 90
INCIDENTS = int(os.environ.get("PGMON_HA_INCIDENTS", "1"))
SERVICES = 5  # prometheus, alertmanager, grafana, node-exporter, one exporter
# The database the third host watches once it has left the group: same server, a name of its own.
OTHER = LabDatabase("otherdb", 5432, "otherdb", DATABASE.user, DATABASE.password, sslmode="require")
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
        databases=[HostDatabase(db.dbname, db.user, db.password) for db in (DATABASE, OTHER)],
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


def store_setting(store) -> list[dict]:
    return [
        {
            "name": "victoria",
            "url": f"{store.url}/api/v1/write",
            "username": USER,
            "password_env": PASSWORD_ENV,
            "query_url": store.url,
        }
    ]


def configure_group(pair, hosts) -> None:
    """The project's inventory lists ``hosts``, group_data the cluster and the store."""
    pair.lab.hosts = hosts
    pair.configure(
        [DATABASE.name],
        pgmon_cluster={"name": CLUSTER, "peer_timeout": f"{PEER_TIMEOUT}s"},
        pgmon_alert_timing=ALERT_TIMING,
        pgmon_evaluation_interval_seconds=EVALUATION_SECONDS,
        pgmon_remote_write=store_setting(pair.store),
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


def add_silence(member, comment: str) -> str:
    """A silence (of an alert that never fires) added through ``member``'s Alertmanager; its id."""
    now = time.time()
    silence = {
        "matchers": [{"name": "alertname", "value": "HaPairMaintenance", "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        "createdBy": "test_ha_pair",
        "comment": comment,
    }
    return alertmanager_api(member, "POST", "/api/v2/silences", json.dumps(silence))["silenceID"]


def silence_states(member) -> dict[str, str]:
    """Every silence ``member``'s Alertmanager holds, by id: active, pending or expired."""
    return {
        s["id"]: s["status"]["state"] for s in alertmanager_api(member, "GET", "/api/v2/silences")
    }


def on_every_member(members, silence_id: str, state: str) -> None:
    for member in members:
        wait_for(
            f"silence {silence_id} {state} on {member.address}",
            lambda m=member: silence_states(m).get(silence_id) == state,
            30,
            0.5,
        )


def knows_silence(member, silence_id: str) -> bool:
    return silence_id in silence_states(member)


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


def no_more(pair, status: str, count: int = 1, most: int | None = None) -> dict[str, int]:
    """Through the window in which a second member's copy would come, every channel keeps ``count`` (or, given
    ``most``, between 1 and that); the counts at the end."""
    deadline = time.monotonic() + DUPLICATE_WINDOW
    while True:
        counts = messages(pair, status)
        if most is None:
            assert all(n == count for n in counts.values()), f"not {count} {status}: {counts}"
        else:
            assert all(1 <= n <= most for n in counts.values()), f"{status} not 1-{most}: {counts}"
        if time.monotonic() >= deadline:
            return counts
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


def test_silence_py_acts_through_one_member_and_both_know(pair, members):
    """silence.py against the group, as the people on call run it: the silence is added through one member
    (the first by inventory name), every member holds it; ended the same way, it is expired on every member."""
    reason = "e2e: the group's maintenance"
    output = silence_command(pair, {"database": DATABASE.name, "for": "5m", "reason": reason})
    added = re.findall(
        rf'pgmon: silence (\S+) added: database="{DATABASE.name}" for 5m: {reason}', output
    )
    assert len(added) == 1, output[-4000:]
    acting = min(m.address for m in members)  # the members' inventory names are their addresses
    assert output.count(f"the silence is changed through {acting}") == 1, output[-4000:]
    on_every_member(members, added[0], "active")
    output = silence_command(pair, {"end": added[0]})
    assert output.count(f"pgmon: silence {added[0]} ended") == 1, output[-4000:]
    on_every_member(members, added[0], "expired")


def test_the_drill_goes_through_one_member_and_reports_every_channel_and_chat(pair, members):
    """drill.py against the group: the drill goes through one member, as a silence does. Run by both, each
    member added its own copy of the alerts, and every channel and chat got the drill twice (10 s and 28 s)."""
    pair.discord.clear()
    pair.telegram.clear()
    result = pair.project.pyinfra(deploy="drill.py", timeout=300)
    output = result.stdout + result.stderr
    pair.outputs.append(output)
    assert result.returncode == 0, output[-4000:]
    acting = min(m.address for m in members)  # the members' inventory names are their addresses
    assert output.count(f"pgmon: the drill goes through {acting}") == 1, output[-4000:]
    for destination in ["discord", *(f"telegram chat {n}" for n in range(1, len(CHATS) + 1))]:
        lines = re.findall(rf"pgmon: drill: {destination} +ok    1 message\(s\) accepted", output)
        assert len(lines) == 1, output[-4000:]

    def drill(status: str):
        return lambda m: f"[DRILL · {status}" in m.text

    pair.discord.wait_for(drill("RESOLVED"), timeout=WAIT)
    for chat in CHATS:
        pair.telegram.wait_for(
            lambda m, chat=chat: drill("RESOLVED")(m) and str(m.body["chat_id"]) == chat,
            timeout=WAIT,
        )
    assert len([m for m in pair.discord.received if drill("FIRING")(m)]) == 1
    firing = sorted(str(m.body["chat_id"]) for m in pair.telegram.received if drill("FIRING")(m))
    assert firing == sorted(CHATS)


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
    """PGMON_HA_INCIDENTS incidents one after the other (the benchmark's 20; 1 in the test run): as many
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
    silence_id = add_silence(first, "made while a member was down")
    second.ssh(
        "docker start $(docker ps -aq --filter label=com.docker.compose.project=pgmon)",
        timeout=120,
    )
    wait_for("the stopped member's stack back", lambda: stack_is_back(second, SERVICES), 120)
    OUTAGE["to"] = time.time()
    wait_for("both members gossiping again", lambda: members_gossip(members), 90, 1)
    assert knows_silence(second, silence_id)
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


def test_a_member_leaves_to_watch_a_database_of_its_own_writing_to_the_same_store(
    network, pair, members, third, db, store, dashboard_server, tmp_path_factory
):
    """The third host is deployed on its own, for another database, writing to the same store (its Alertmanager,
    restarted without the cluster's flags, leaves it); then the group without it. The fleet dashboard reading the
    store offers both hosts' databases. (That the pair still sends each notification once, the next test shows.)"""
    alone = BareHostDeployment(
        Group([third]),
        db,
        network,
        pair.discord,
        pair.telegram,
        directory=tmp_path_factory.mktemp("ha-leaver"),
        dashboard_url=dashboard_server,
        databases=(OTHER,),
        site=SITE,
    )
    # The team's secrets, the Grafana key that made the host's Grafana data among them.
    shared = (
        PASSWORD_ENV,
        "PGMON_E2E_TELEGRAM_CHAT",
        "PGMON_E2E_GRAFANA_PASSWORD",
        "PGMON_E2E_GRAFANA_SECRET_KEY",
    )
    alone.secrets.update({key: pair.secrets[key] for key in shared})
    alone.configure(
        [OTHER.name],
        pgmon_remote_write=store_setting(store),
        pgmon_external_labels={"site": "leaver"},
    )
    assert_ok(alone.run())
    configure_group(pair, members)
    output = assert_ok(pair.run())
    assert len(re.findall(rf"cluster +ok +{CLUSTER}: all 2 members gossip", output)) == 2
    assert members_gossip(members)

    model = json.loads(FLEET_DASHBOARD.read_text())
    databases = next(v for v in model["templating"]["list"] if v["name"] == "database")

    def offered() -> set[str]:
        fleet = Dashboard(
            model, StoreQueries(store.password, store.url), SCRAPE_SECONDS, time.time()
        )
        return set(fleet.options(databases, fleet.resolve({})))

    wait_for(
        "the fleet dashboard on the store offering both hosts' databases",
        lambda: {DATABASE.name, OTHER.name} <= offered(),
        60,
        1,
    )


def test_with_one_member_cut_from_the_network_alerts_arrive_once(network, pair, members, db):
    """The whole test host unplugged, its stack running: the other member notifies alone, once; plugged back,
    the member receives the notification log and sends nothing already sent. The pair is the group that the
    third member left."""
    first, second = members
    cut_from = time.time()
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
    cut_to = time.time()
    started = time.monotonic()
    wait_for("both members gossiping again", lambda: members_gossip(members), 90, 1)
    no_more(pair, "FIRING")
    # Each member again hears what the other adds, both ways: until then (a push-pull sync at the latest, each
    # minute) a notification may go out twice, as docs/cluster.md says of a partition.
    for source, target in ((first, second), (second, first)):
        silence_id = add_silence(source, "after the network came back")
        heard = partial(knows_silence, target, silence_id)
        wait_for("a new silence heard across", heard, 90, 1)
    measured("network back to gossip heard both ways", f"{time.monotonic() - started:.1f}s")
    # The resolution, the first notification after the cut, once: the member that was cut off has no group for
    # the alert and flushes the one the resolution makes at once, the other on its step; with a peer timeout a
    # whole number of steps long, both sent it (3 runs of 5 with 3 s).
    recovery(db)
    measured(
        "the resolution after the cut, once per channel", f"{exactly_once(pair, 'RESOLVED'):.1f}s"
    )
    series = f'pg_up{{database="{DATABASE.name}"}}'
    gap = largest_gap(pair.store.timestamps(series, cut_from - 10, cut_to + 10))
    measured("largest gap in the store across one member cut off", f"{gap:.1f}s")
    assert gap <= 3 * SCRAPE_SECONDS
