"""An HA group of processing hosts: identical stacks whose Alertmanagers form one cluster (docs/cluster.md).

Every host of the inventory whose ``pgmon_cluster`` has the same ``name`` is a member. Each member's
Prometheus scrapes the same databases and sends its alerts to every member's Alertmanager; the
Alertmanagers gossip (silences, which notification went out) so that an alert is sent once, by one of
them. ``members`` (inventory name -> the IPv4 address the other members reach it at) is read from the
inventory when group_data does not list it: each host's ``pgmon_cluster_address``, else its SSH
address when that is an IP address.

Example, group_data/pgmon_hosts.py for an inventory ``pgmon_hosts = ["10.0.0.11", "10.0.0.12"]``:

.. code:: python

    pgmon_cluster = {"name": "pgmon-prod"}
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping

from pydantic import Field, model_validator

from .errors import SETTING_PREFIX
from .fields import Duration, IPAddress, Name, Port, Strict, duration_seconds

CLUSTER_KEY = SETTING_PREFIX + "cluster"
ADDRESS_KEY = SETTING_PREFIX + "cluster_address"
# The label that tells the members' series apart; dropped from alerts (one alert for all members) and from
# what is sent to a store (its deduplication keeps one copy).
REPLICA_LABEL = "pgmon_replica"


class Cluster(Strict):
    # The gossip's --cluster.label: Alertmanagers of another cluster that reach this one are refused.
    name: Name
    gossip_port: Port = 9094
    # How long a member waits for the ones before it in the cluster's order to send a notification before it
    # sends it itself (Alertmanager's --cluster.peer-timeout): longer than a notification takes to deliver,
    # and half a flush step off the step (peer_timeout_problem); None: derived from the alert timing.
    peer_timeout: Duration | None = None
    members: dict[str, IPAddress] = Field(default_factory=dict)
    # The member this run deploys; set from the inventory, like members.
    this_host: str = ""

    @model_validator(mode="after")
    def _this_host_is_a_member(self) -> Cluster:
        if self.this_host not in self.members:
            raise ValueError(
                f"this host ({self.this_host or 'unnamed'}) is not among members "
                f"({', '.join(self.members) or 'none'}); list it there, or leave members out so that pgmon "
                "reads them from the inventory"
            )
        return self

    @property
    def address(self) -> str:
        return self.members[self.this_host]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(self.members.values())

    @property
    def peers(self) -> dict[str, str]:
        """The other members, by name."""
        return {name: a for name, a in self.members.items() if name != self.this_host}


def _address_of(name: str, data: Mapping[str, object]) -> object:
    """A host's address for its peers: pgmon_cluster_address, else its SSH address if it is an IP address
    (validation names the host whose address is missing or no IP address)."""
    if data.get(ADDRESS_KEY):
        return data[ADDRESS_KEY]
    ssh = str(data.get("ssh_hostname") or name)
    try:
        ipaddress.IPv4Address(ssh)
    except ValueError:
        return (
            f"{ssh} (no pgmon_cluster_address in this host's data: set it to the IPv4 address the other "
            "members reach it at)"
        )
    return ssh


def with_members(
    this_host: str,
    data: Mapping[str, object],
    inventory: Iterable[tuple[str, Mapping[str, object]]],
) -> dict[str, object]:
    """``data`` with ``pgmon_cluster`` completed from the inventory (every host's name and data):
    ``this_host`` and, unless given, the members. Data without a cluster is returned as it is."""
    cluster = data.get(CLUSTER_KEY)
    if not isinstance(cluster, Mapping) or not cluster.get("name"):
        return dict(data)
    completed = {**cluster, "this_host": this_host}
    if "members" not in cluster:
        completed["members"] = {
            name: _address_of(name, other)
            for name, other in sorted(inventory)
            if isinstance(other.get(CLUSTER_KEY), Mapping)
            and other[CLUSTER_KEY].get("name") == cluster["name"]
        }
    return {**data, CLUSTER_KEY: completed}


# Alertmanager's own default peer timeout, which the derived one does not go below.
_SHORTEST_PEER_TIMEOUT_MS = 15_000


def flush_step_ms(evaluation_interval_seconds: int, group_wait: str, group_interval: str) -> int:
    """The step on which the members' Alertmanagers flush an alert group: alerts arrive at Prometheus's
    evaluations, a group flushes group_wait after its first alert (at once when the alert is older) and
    every group_interval after, so two members' flushes of a group lie a whole number of steps apart."""
    return math.gcd(
        evaluation_interval_seconds * 1000,
        round(duration_seconds(group_wait) * 1000),
        round(duration_seconds(group_interval) * 1000),
    )


def peer_timeout_ms(cluster: Cluster, step_ms: int) -> int:
    """The peer timeout given, or half a step past the first whole step from Alertmanager's 15 s."""
    if cluster.peer_timeout is not None:
        return round(duration_seconds(cluster.peer_timeout) * 1000)
    return _half_step_off(_SHORTEST_PEER_TIMEOUT_MS, step_ms)


def _half_step_off(at_least_ms: int, step_ms: int) -> int:
    return math.ceil((at_least_ms - step_ms // 2) / step_ms) * step_ms + step_ms // 2


def peer_timeout_problem(cluster: Cluster, step_ms: int) -> str | None:
    """A peer timeout near a whole number of flush steps: the second member's wait then ends as the first
    member flushes the same group, neither has the other's entry in the notification log yet, and both
    send (seen after a member rejoined: its new group flushed at once, the other's on its step)."""
    if cluster.peer_timeout is None:
        return None
    given = peer_timeout_ms(cluster, step_ms)
    off = given % step_ms
    if min(off, step_ms - off) >= step_ms / 4:
        return None
    return (
        f"cluster.peer_timeout: {cluster.peer_timeout} is within a quarter step of a whole number of "
        f"{step_ms} ms steps, the step on which the members flush alert groups (the greatest common divisor "
        "of evaluation_interval_seconds and alert_timing's group_wait and group_interval), so both members "
        f"can send the same notification; use {_half_step_off(given, step_ms)}ms, or leave it out"
    )


def acting_member(cluster: Cluster | None, active_hosts: Iterable[str]) -> str | None:
    """The HA group member through which a run changes or sends what the group's Alertmanagers share (a
    silence, a test alert, a fire drill): the first by name of the run's active hosts that are members. None
    outside a group: each host acts for itself."""
    if cluster is None:
        return None
    return min((name for name in active_hosts if name in cluster.members), default=None)
