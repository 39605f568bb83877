"""Before the host is touched: the exporters against each server's connections (tasks/connection_budget.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.connection_budget import (
    SERVER_CONNECTIONS_QUERY,
    ServerConnections,
    budget_lines,
    check_connection_budget,
    parse_server_connections,
)
from tasks.settings import DeployError, build_settings

from .conftest import ENVIRON, group_data

DB1 = "db1:5432"  # shop (role mon$user) and billing (role mon); ledger is on db2:5433
TWO_ON_DB1 = build_settings(group_data(), ENVIRON)


def sample(of: str, value: float, **labels) -> dict:
    """One series of the query's answer, as Prometheus's /api/v1/query gives it."""
    return {"metric": {"of": of, **labels}, "value": [1765000000.123, str(value)]}


def test_the_answer_is_read_per_server_and_a_server_without_its_slots_is_left_out():
    result = [
        sample("slots", 97, server=DB1),
        sample("clients", 40, server=DB1),
        sample("role", 2, server=DB1, usename="mon"),
        sample("role", 1, server=DB1, usename="mon$user"),
        sample("limit", -1, server=DB1, rolname="mon"),
        sample("limit", 20, server=DB1, rolname="tenant_admin"),
        sample("clients", 3, server="db2:5433"),
    ]
    assert parse_server_connections(result) == {
        DB1: ServerConnections(
            slots=97,
            clients=40,
            by_role={"mon": 2, "mon$user": 1},
            role_limits={"mon": -1, "tenant_admin": 20},
        )
    }
    assert SERVER_CONNECTIONS_QUERY.count('"of", "') == 4


def test_exporters_beyond_the_slots_left_are_refused_naming_the_server_and_the_fix(settings):
    """db1 has 10 slots; 9 clients hold one, 1 of them pgmon's (shop's role): 2 left for 2 exporters, which
    fit between scrapes but not while scraping (a warning); with 1 slot left they do not fit (a refusal)."""
    roomy = {DB1: ServerConnections(slots=10, clients=9, by_role={"mon$user": 1})}
    refusals, (warning,) = budget_lines(settings, roomy, {})
    assert refusals == []
    assert warning.startswith("WARNING server db1:5432: pgmon's 2 exporter(s) there hold 2")
    assert "up to 4 while scraping, and 2 of its 10 slots" in warning
    full = {DB1: ServerConnections(slots=10, clients=10, by_role={"mon$user": 1})}
    (refusal,), _ = budget_lines(settings, full, {})
    assert refusal.startswith("pgmon_databases: server db1:5432:")
    assert "1 of its 10 slots" in refusal and "nothing was changed" in refusal
    assert "Raise max_connections" in refusal and "pgmon_servers" in refusal


def test_a_server_prometheus_does_not_know_yet_is_not_judged(settings):
    assert budget_lines(settings, {}, {}) == ([], [])


def test_probes_without_a_role_limit_are_warned_of_and_a_limit_quiets_it():
    settings = build_settings(
        group_data(
            pgmon_servers=[
                {"name": "tenants", "host": "db1", "user": "prober", "password_env": "PW_LEDGER"}
            ]
        ),
        ENVIRON,
    )
    found = {"tenants": ["tenants/a", "tenants/b"]}
    unlimited = {DB1: ServerConnections(slots=97, role_limits={"prober": -1})}
    _, (warning,) = budget_lines(settings, unlimited, found)
    assert "server tenants: the probes of its 2 databases found" in warning
    assert "ALTER ROLE prober CONNECTION LIMIT n" in warning
    limited = {DB1: ServerConnections(slots=97, role_limits={"prober": 10})}
    assert budget_lines(settings, limited, found) == ([], [])
    assert budget_lines(settings, unlimited, {"tenants": []}) == ([], [])


@given(
    slots=st.integers(0, 300),
    clients=st.integers(0, 300),
    ours=st.integers(0, 5),
)
def test_refused_exactly_when_the_exporters_need_more_than_the_slots_others_leave(
    slots, clients, ours
):
    """db1's two exporters hold 2 between scrapes and 4 while scraping, against the slots the other clients
    leave (what pgmon's role holds now is pgmon's, not theirs)."""
    ours = min(ours, clients)
    known = {DB1: ServerConnections(slots=slots, clients=clients, by_role={"mon": ours})}
    refusals, warnings = budget_lines(TWO_ON_DB1, known, {})
    left = slots - (clients - ours)
    assert bool(refusals) == (2 > left)
    assert bool(warnings) == (2 <= left < 4)


class PrometheusAnswering:
    def __init__(self, status: int, result: list[dict]):
        self.status, self.result = status, result
        self.closed = False

    def get_json(self, address, port, path, auth=None):
        return self.status, {
            "status": "success",
            "data": {"resultType": "vector", "result": self.result},
        }

    def close(self):
        self.closed = True


@pytest.fixture
def prometheus(monkeypatch):
    """The deploy's HTTP to the host, answered as Prometheus would; set ``.answer`` before use."""
    holder = {}

    def open_http(host):
        return holder["answer"]

    monkeypatch.setattr("tasks.connection_budget.HostHTTP", open_http)
    return holder


def test_the_deploy_step_raises_the_refusal_and_returns_the_warnings(settings, prometheus):
    prometheus["answer"] = PrometheusAnswering(200, [sample("slots", 1, server=DB1)])
    with pytest.raises(DeployError, match="pgmon_databases: server db1:5432"):
        check_connection_budget(settings, host=None, found={})
    assert prometheus["answer"].closed
    prometheus["answer"] = PrometheusAnswering(0, [])  # nothing listens: not deployed yet
    assert check_connection_budget(settings, host=None, found={}) == []
