"""pgmon_cluster: members read from the inventory, and what an HA group's files say (one alert for all members,
each Prometheus sending to every Alertmanager, the gossip's flags and ports), checked by promtool and amtool."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.isolation import unit_file
from tasks.render import render_stack
from tasks.render.alertmanager import render_cluster_peers
from tasks.render.compose import compose_services
from tasks.render.prometheus import render_prometheus_config
from tasks.settings import DeployError, acting_member, build_settings
from tasks.settings.cluster import ADDRESS_KEY, REPLICA_LABEL, peer_timeout_ms, with_members
from tasks.verify_stack import cluster_findings

from .conftest import ENVIRON, group_data
from .test_properties import needs_tools, run_tools, write_tree

CLUSTER = {"pgmon_cluster": {"name": "prod"}}
INVENTORY = [
    ("10.0.0.12", CLUSTER),
    ("10.0.0.11", CLUSTER),
    ("mon-c", {**CLUSTER, "pgmon_cluster_address": "10.0.0.13"}),
    ("10.0.0.20", {"pgmon_cluster": {"name": "staging"}}),
    ("10.0.0.30", {}),
]


def member_settings(this_host: str = "10.0.0.11", inventory=INVENTORY, **overrides):
    data = with_members(this_host, group_data(**{**CLUSTER, **overrides}), inventory)
    return build_settings(data, ENVIRON)


def files(settings, dashboard_9628) -> dict[str, bytes]:
    return {f.path: f.content for f in render_stack(settings, dashboard_9628).files}


def test_members_are_the_inventorys_hosts_of_the_same_cluster_at_their_addresses():
    cluster = member_settings().config.cluster
    assert cluster.members == {
        "10.0.0.11": "10.0.0.11",
        "10.0.0.12": "10.0.0.12",
        "mon-c": "10.0.0.13",
    }
    assert cluster.peers == {"10.0.0.12": "10.0.0.12", "mon-c": "10.0.0.13"}
    assert cluster.address == "10.0.0.11"


def test_a_member_known_only_by_a_host_name_is_named_with_the_setting_to_add():
    inventory = [*INVENTORY, ("mon-d.example.com", CLUSTER)]
    with pytest.raises(DeployError) as error:
        member_settings(inventory=inventory)
    message = str(error.value)
    assert "pgmon_cluster.members.mon-d.example.com" in message
    assert "set it to the IPv4 address the other members reach it at" in message
    assert "pgmon_cluster_address" in message


def test_listed_members_must_include_this_host_and_the_gossip_port_must_be_free():
    data = group_data(
        pgmon_cluster={"name": "prod", "members": {"a": "10.0.0.1"}, "this_host": "b"}
    )
    with pytest.raises(
        DeployError, match=r"pgmon_cluster: .*this host \(b\) is not among members \(a\)"
    ):
        build_settings(data, ENVIRON)
    with pytest.raises(
        DeployError, match="cluster.gossip_port: port 9093 is already used by alertmanager_port"
    ):
        member_settings(pgmon_cluster={"name": "prod", "gossip_port": 9093})


def test_alerts_of_all_members_are_one_alert_sent_to_every_alertmanager(dashboard_9628):
    rendered = files(member_settings(), dashboard_9628)
    prometheus = yaml.safe_load(rendered["prometheus/prometheus.yml"])
    assert prometheus["global"]["external_labels"] == {REPLICA_LABEL: "10.0.0.11"}
    assert prometheus["alerting"]["alert_relabel_configs"] == [
        {"action": "labeldrop", "regex": REPLICA_LABEL}
    ]
    (managers,) = prometheus["alerting"]["alertmanagers"]
    assert managers["static_configs"] == [
        {"targets": ["alertmanager:9093", "10.0.0.12:9093", "10.0.0.13:9093"]}
    ]
    node = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "node")
    assert node["static_configs"][0]["labels"] == {"instance": "10.0.0.11"}
    # What one member's own exporter or host sees stays that member's alert.
    rules = yaml.safe_load(rendered["prometheus/rules/pgmon.rules.yml"])
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert by_name["ExporterDown"]["labels"]["processing_host"] == (
        "{{ $externalLabels.pgmon_replica }}"
    )
    assert "processing_host" not in by_name["PostgresDown"]["labels"]


def test_one_host_has_no_gossip_and_no_replica_label(dashboard_9628):
    rendered = files(build_settings(group_data(), ENVIRON), dashboard_9628)
    prometheus = yaml.safe_load(rendered["prometheus/prometheus.yml"])
    assert "external_labels" not in prometheus["global"]
    assert "alert_relabel_configs" not in prometheus["alerting"]
    compose = yaml.safe_load(rendered["docker-compose.yml"])
    assert "--cluster.listen-address=" in compose["services"]["alertmanager"]["command"]
    assert compose["services"]["alertmanager"]["ports"] == ["127.0.0.1:9093:9093"]


def test_alertmanager_gossips_with_the_other_members_on_this_members_address(dashboard_9628):
    compose = yaml.safe_load(files(member_settings(), dashboard_9628)["docker-compose.yml"])
    alertmanager = compose["services"]["alertmanager"]
    flags = [f for f in alertmanager["command"] if f.startswith("--cluster.")]
    # Steps of 15 s (evaluations 15 s, group_wait 30 s, group_interval 5m): 15 s and half a step.
    assert flags == [
        "--cluster.listen-address=0.0.0.0:9094",
        "--cluster.advertise-address=10.0.0.11:9094",
        "--cluster.label=prod",
        "--cluster.peer-timeout=22500ms",
    ]
    assert alertmanager["ports"] == [
        "127.0.0.1:9093:9093",
        "10.0.0.11:9093:9093",
        "10.0.0.11:9094:9094/tcp",
        "10.0.0.11:9094:9094/udp",
    ]


def test_a_peer_timeout_on_the_flush_step_is_refused_naming_one_half_a_step_off(dashboard_9628):
    # Seen end to end with 3s on a 1 s step: a member back from a cut flushed its new group at once, the other
    # member 3.006 s later on its step, as the first's wait ended; both sent the resolution.
    timing = {
        "pgmon_evaluation_interval_seconds": 2,
        "pgmon_alert_timing": {"group_wait": "1s", "group_interval": "5s"},
    }
    with pytest.raises(DeployError) as error:
        member_settings(pgmon_cluster={"name": "prod", "peer_timeout": "3s"}, **timing)
    assert (
        "pgmon_cluster.peer_timeout: 3s is within a quarter step of a whole number of 1000 ms steps"
        in str(error.value)
    )
    assert "use 3500ms, or leave it out" in str(error.value)
    chosen = member_settings(pgmon_cluster={"name": "prod", "peer_timeout": "3500ms"}, **timing)
    derived = member_settings(**timing)  # 15 s at least, half a step off: 15.5 s
    for member, flag in ((chosen, "3500ms"), (derived, "15500ms")):
        compose = yaml.safe_load(files(member, dashboard_9628)["docker-compose.yml"])
        assert f"--cluster.peer-timeout={flag}" in compose["services"]["alertmanager"]["command"]


@settings(max_examples=200, deadline=None)
@given(
    evaluation=st.integers(1, 300),
    group_wait=st.integers(0, 600),
    group_interval=st.integers(1, 3600),
)
def test_the_derived_peer_timeout_stays_half_a_step_from_every_flush(
    evaluation, group_wait, group_interval
):
    """Whatever the timing, two members' flushes of a group lie whole steps apart; the derived peer timeout is
    at least Alertmanager's 15 s and as far as can be from any whole number of steps."""
    timing = {
        "pgmon_evaluation_interval_seconds": evaluation,
        "pgmon_alert_timing": {
            "group_wait": f"{group_wait}s",
            "group_interval": f"{group_interval}s",
        },
    }
    config = member_settings(**timing).config
    step = config.flush_step_ms
    assert evaluation * 1000 % step == group_wait * 1000 % step == group_interval * 1000 % step == 0
    timeout = peer_timeout_ms(config.cluster, step)
    assert timeout >= 15_000 and timeout - step < 15_000
    assert timeout % step == step // 2


@needs_tools
def test_a_members_files_pass_promtool_amtool_and_compose(dashboard_9628):
    root = Path(tempfile.mkdtemp(prefix="pgmon-cluster-"))
    stack = render_stack(member_settings(pgmon_remote_write=STORES), dashboard_9628)
    write_tree(stack, root)
    for check, (code, out) in run_tools(root).items():
        assert code == 0 and "WARNING" not in out, f"{check}:\n{out}"


def test_verification_names_the_members_this_alertmanager_does_not_see():
    settings = member_settings()
    peers = [{"address": "10.0.0.11:9094"}, {"address": "10.0.0.13:9094"}]
    (finding,) = cluster_findings(settings, {"status": "ready", "peers": peers})
    assert not finding.ok and "does not see 10.0.0.12" in finding.detail
    everyone = [*peers, {"address": "10.0.0.12:9094"}]
    (finding,) = cluster_findings(settings, {"status": "ready", "peers": everyone})
    assert finding.ok and finding.detail == "prod: all 3 members gossip"
    (finding,) = cluster_findings(settings, {"status": "settling", "peers": everyone})
    assert not finding.ok
    assert cluster_findings(build_settings(group_data(), ENVIRON), {}) == []


def test_a_silence_goes_through_one_member_the_first_that_answered():
    cluster = member_settings().config.cluster
    assert acting_member(cluster, ["10.0.0.12", "10.0.0.11", "10.0.0.30"]) == "10.0.0.11"
    assert (
        acting_member(cluster, ["10.0.0.12", "mon-c"]) == "10.0.0.12"
    )  # 10.0.0.11 did not connect
    assert (
        acting_member(build_settings(group_data(), ENVIRON).config.cluster, ["10.0.0.11"]) is None
    )


STORES = [
    {"name": "victoria", "url": "https://vm.example.com/api/v1/write"},
    {
        "name": "mimir",
        "url": "https://mimir.example.com/api/v1/push",
        "replica_label": "__replica__",
    },
]


def test_a_store_gets_the_members_copies_as_one_series_or_under_its_replica_label(dashboard_9628):
    settings = member_settings(pgmon_remote_write=STORES)
    prometheus = yaml.safe_load(files(settings, dashboard_9628)["prometheus/prometheus.yml"])
    victoria, mimir = prometheus["remote_write"]
    assert victoria["write_relabel_configs"] == [{"action": "labeldrop", "regex": REPLICA_LABEL}]
    assert mimir["write_relabel_configs"] == [
        {"source_labels": [REPLICA_LABEL], "target_label": "__replica__"},
        {"action": "labeldrop", "regex": REPLICA_LABEL},
    ]
    single = build_settings(group_data(pgmon_remote_write=STORES), ENVIRON)
    one_host = yaml.safe_load(files(single, dashboard_9628)["prometheus/prometheus.yml"])
    assert all("write_relabel_configs" not in store for store in one_host["remote_write"])
    with pytest.raises(DeployError, match=r"replica_label: .*'2x' is not a label name"):
        member_settings(pgmon_remote_write=[{**STORES[0], "replica_label": "2x"}])


def test_the_peers_are_a_file_read_at_start_so_a_new_member_leaves_the_others_definitions_alone(
    dashboard_9628, tmp_path
):
    three = files(member_settings(), dashboard_9628)
    assert three["alertmanager/cluster_peers"] == b"10.0.0.12:9094\n10.0.0.13:9094\n"
    two = files(member_settings(inventory=INVENTORY[1:2] + INVENTORY[0:1]), dashboard_9628)
    assert two["alertmanager/cluster_peers"] == b"10.0.0.12:9094\n"
    services = [yaml.safe_load(f["docker-compose.yml"])["services"] for f in (two, three)]
    assert services[0] == services[1]  # revisions included: nothing is recreated
    # The entrypoint's shell turns the file into flags (run here with an alertmanager that prints them).
    entrypoint = services[0]["alertmanager"]["entrypoint"]
    peers = tmp_path / "etc" / "alertmanager" / "cluster_peers"
    peers.parent.mkdir(parents=True)
    peers.write_bytes(three["alertmanager/cluster_peers"])
    script = (  # as Compose hands it to the container: $$ is its escape of a $
        entrypoint[2]
        .replace("$$", "$")
        .replace("/etc/alertmanager", str(peers.parent))
        .replace("/bin/alertmanager", "printf '%s\\n'")
    )
    result = subprocess.run(
        ["sh", "-c", script, "alertmanager", "--config.file=x"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "--config.file=x",
        "--cluster.peer=10.0.0.12:9094",
        "--cluster.peer=10.0.0.13:9094",
    ]


_addresses = st.ip_addresses(v=4).map(str)
_inventories = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), _addresses, min_size=1, max_size=6
).filter(lambda members: len(set(members.values())) == len(members))


@settings(max_examples=60, deadline=None)
@given(members=_inventories, data=st.data())
def test_every_member_sends_to_every_alertmanager_and_admits_exactly_the_members(members, data):
    """Any inventory of members: each member's Prometheus names every other member's Alertmanager once, its
    peers file every other member, its Alertmanager advertises its own address, and its firewall chain admits
    the members and no one else."""
    this_host = data.draw(st.sampled_from(sorted(members)))
    inventory = [(name, {**CLUSTER, ADDRESS_KEY: address}) for name, address in members.items()]
    settings_ = member_settings(this_host, inventory)
    cluster = settings_.config.cluster
    assert cluster.members == members
    config = yaml.safe_load(render_prometheus_config(settings_))
    (managers,) = config["alerting"]["alertmanagers"]
    targets = managers["static_configs"][0]["targets"]
    others = [a for name, a in sorted(members.items()) if name != this_host]
    assert targets == ["alertmanager:9093", *(f"{a}:9093" for a in others)]
    assert render_cluster_peers(settings_).decode().splitlines() == [f"{a}:9094" for a in others]
    flags = compose_services(settings_)["alertmanager"]["command"]
    assert f"--cluster.advertise-address={members[this_host]}:9094" in flags
    script = unit_file("p", cluster.addresses)
    admitted = set(re.findall(r"-A pgmon-peers-\w+ -s ([0-9.]+) -j RETURN", script))
    assert admitted == set(members.values())
