"""Real faults on the lab's engine and PostgreSQL: after each, the stack comes back (by itself or by a re-run
that changes only what the fault broke), verification passes, and nothing is lost: Prometheus keeps the
samples it had, Grafana keeps what was saved in it.

The tests share one deployment and run in file order.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from .lab import (
    GRAFANA_PORT,
    PROMETHEUS_PORT,
    _pid_alive,
    prometheus_query,
    run,
    wait_until,
)
from .test_deploy import assert_ok, changed_operations

pytestmark = pytest.mark.e2e

NAMES = ["shop", "billing", "ledger"]
KEPT_DASHBOARD = "pgmon-faults-kept"


@pytest.fixture(scope="module")
def stack(deployment):
    deployment.configure(NAMES)
    assert_ok(deployment.run())
    # Something saved in Grafana's database, as a user would: it must outlive every fault.
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    body = {"dashboard": {"uid": KEPT_DASHBOARD, "title": "Kept across faults", "panels": []}, "overwrite": True}
    response = requests.post(f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/db", json=body, auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    wait_until("a few samples of shop", lambda: samples_before(time.time()) >= 3, 60)
    return deployment


def samples_before(moment: float) -> int:
    """Samples of shop's pg_up in the minute up to ``moment``: history Prometheus still holds."""
    result = requests.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query", timeout=10, params={
        "query": 'count_over_time(pg_up{database="shop"}[1m])', "time": f"{moment:.3f}"}).json()
    values = result.get("data", {}).get("result", [])
    return int(float(values[0]["value"][1])) if values else 0


def grafana_keeps_its_data(deployment) -> bool:
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    response = requests.get(f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/uid/{KEPT_DASHBOARD}", auth=auth,
                            timeout=10)
    return response.status_code == 200


def container_running(deployment, service: str) -> bool:
    cid = deployment.containers().get(service)
    return bool(cid) and run("docker", "inspect", "-f", "{{.State.Running}}", cid, check=False).stdout.strip() == "true"


def test_docker_engine_restart_brings_the_stack_back_with_its_history(stack, lab):
    before = time.time()
    pid = int(run("pidof", "dockerd").stdout.split()[0])
    os.kill(pid, signal.SIGTERM)
    wait_until("dockerd to stop", lambda: not _pid_alive(pid), 60)
    lab.restart_docker()
    # restart: unless-stopped: every container comes back with the engine, no deploy needed.
    wait_until("the stack to run again", lambda: all(container_running(stack, s) for s in stack.containers()), 120)
    result = stack.run()
    output = assert_ok(result)
    assert changed_operations(output) == []  # nothing to repair: the host is as pgmon left it
    assert samples_before(before) >= 3
    assert grafana_keeps_its_data(stack)


def test_a_crashed_exporter_restarts_by_itself(stack):
    cid = stack.containers()["exporter-shop"]
    pid = int(run("docker", "inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(pid, signal.SIGKILL)  # the process dies, as on a crash; Docker's restart policy applies
    wait_until("shop's exporter to be restarted", lambda: int(run(
        "docker", "inspect", "-f", "{{.RestartCount}}", cid).stdout) >= 1 and container_running(stack, "exporter-shop"),
        60)
    assert_ok(stack.run())  # verification passes; nothing else was touched


def test_an_exporter_stopped_by_hand_is_started_by_the_next_run_and_nothing_else(stack):
    ids = stack.containers()
    run("docker", "stop", ids["exporter-billing"])  # a manual stop: the restart policy leaves it down
    assert_ok(stack.run())
    after = stack.containers()
    assert after == ids  # the same containers: started, not recreated
    assert container_running(stack, "exporter-billing")


def test_a_removed_prometheus_is_recreated_with_its_history(stack):
    before = time.time()
    ids = stack.containers()
    run("docker", "rm", "-f", ids["prometheus"])
    assert_ok(stack.run())
    after = stack.containers()
    assert after["prometheus"] != ids["prometheus"]
    assert {s: c for s, c in after.items() if s != "prometheus"} == {s: c for s, c in ids.items() if s != "prometheus"}
    assert samples_before(before) >= 3  # the TSDB lives in its volume, not in the container


def test_postgresql_stopped_during_a_deploy_is_named_and_the_next_run_converges(stack, lab):
    stack.configure(NAMES + ["analytics"])
    deploy = stack.project.start()
    try:
        deploy.wait_for("Write pgmon configuration")
        lab.stop_cluster(5433)
        code, output = deploy.finish()
        assert code != 0, output[-3000:]
        assert "database ledger" in output and "PostgreSQL unreachable from the exporter (pg_up 0)" in output
    finally:
        lab.start_cluster(5433)
    assert_ok(stack.run())


def test_a_deploy_killed_mid_apply_leaves_no_half_file_and_the_next_run_converges(stack):
    stack.configure(NAMES)  # removes analytics: files and a container to change
    deploy = stack.project.start()
    deploy.wait_for("Write pgmon configuration")
    deploy.process.kill()
    deploy.finish()
    # Whatever the file step reached, each file is the old one or the new one, never a part: files only appear
    # by rename. The next run finishes the job and removes the staging folder.
    assert_ok(stack.run())
    assert not list(Path(stack.site.base_dir).glob(".pgmon-stage.*"))
    assert {f"exporter-{name}" for name in NAMES} <= set(stack.containers())
    assert "exporter-analytics" not in stack.containers()
    assert prometheus_query('up{job="postgres"} == 1') and grafana_keeps_its_data(stack)
