"""Real faults on the lab's containers and PostgreSQL: after each, the stack comes back (by itself or by a
re-run that changes only what the fault broke), verification passes, and nothing is lost: Prometheus keeps the
samples it had, Grafana keeps what was saved in it. The engine itself stopped and started: test_bare_host.py's
reboot, on a host of its own (the test-host suites run beside these, on the lab's engine).

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
    api_auth,
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
    body = {
        "dashboard": {"uid": KEPT_DASHBOARD, "title": "Kept across faults", "panels": []},
        "overwrite": True,
    }
    response = requests.post(
        f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/db", json=body, auth=auth, timeout=10
    )
    assert response.status_code == 200, response.text
    wait_until("a few samples of shop", lambda: samples_before(time.time()) >= 3, 60)
    return deployment


def samples_before(moment: float) -> int:
    """Samples of shop's pg_up in the minute up to ``moment``: history Prometheus still holds."""
    result = requests.get(
        f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query",
        auth=api_auth(PROMETHEUS_PORT),
        timeout=10,
        params={"query": 'count_over_time(pg_up{database="shop"}[1m])', "time": f"{moment:.3f}"},
    ).json()
    values = result.get("data", {}).get("result", [])
    return int(float(values[0]["value"][1])) if values else 0


def grafana_keeps_its_data(deployment) -> bool:
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    response = requests.get(
        f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/uid/{KEPT_DASHBOARD}",
        auth=auth,
        timeout=10,
    )
    return response.status_code == 200


def container_running(deployment, service: str) -> bool:
    cid = deployment.containers().get(service)
    return (
        bool(cid)
        and run("docker", "inspect", "-f", "{{.State.Running}}", cid, check=False).stdout.strip()
        == "true"
    )


def test_a_crashed_exporter_restarts_by_itself(stack):
    cid = stack.containers()["exporter-shop"]
    pid = int(run("docker", "inspect", "-f", "{{.State.Pid}}", cid).stdout)
    os.kill(pid, signal.SIGKILL)  # the process dies, as on a crash; Docker's restart policy applies
    wait_until(
        "shop's exporter to be restarted",
        lambda: (
            int(run("docker", "inspect", "-f", "{{.RestartCount}}", cid).stdout) >= 1
            and container_running(stack, "exporter-shop")
        ),
        60,
    )
    assert_ok(stack.run())  # verification passes; nothing else was touched


def test_an_exporter_stopped_by_hand_is_started_by_the_next_run_and_nothing_else(stack):
    ids = stack.containers()
    run(
        "docker", "stop", ids["exporter-billing"]
    )  # a manual stop: the restart policy leaves it down
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
    assert {s: c for s, c in after.items() if s != "prometheus"} == {
        s: c for s, c in ids.items() if s != "prometheus"
    }
    assert samples_before(before) >= 3  # the TSDB lives in its volume, not in the container


def test_postgresql_stopped_during_a_deploy_is_named_and_the_next_run_converges(stack, lab):
    stack.configure(NAMES + ["analytics"])
    deploy = stack.project.start("--data", "pgmon_verify_timeout_seconds=15")
    try:
        deploy.wait_for(
            "Preparing operation files"
        )  # the run has read the host; it has yet to verify
        lab.stop_cluster(5433)
        code, output = deploy.finish()
        assert code != 0, output[-3000:]
        assert (
            "database ledger" in output
            and "PostgreSQL unreachable from the exporter (pg_up 0)" in output
        )
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


def test_strays_in_base_dir_neither_redirect_compose_nor_break_the_listing(stack):
    base = Path(stack.site.base_dir)
    # A user's compose file and .env there would redirect a plain `docker compose up --remove-orphans`.
    (base / "compose.yaml").write_text("services:\n  intruder:\n    image: busybox\n")
    (base / ".env").write_text("COMPOSE_PROJECT_NAME=intruder\nCOMPOSE_FILE=compose.yaml\n")
    (base / "notes\nwith a line break.txt").write_text(
        "a user's file\n"
    )  # names pgmon's listing must survive
    ids = stack.containers()
    stack.configure(NAMES + ["analytics"])
    try:
        assert_ok(stack.run())
        after = stack.containers()
        assert {s: c for s, c in after.items() if s in ids} == ids and "exporter-analytics" in after
        assert "intruder" not in run("docker", "ps", "-a", "--format", "{{.Names}}").stdout
        assert (base / "compose.yaml").exists() and (base / "notes\nwith a line break.txt").exists()
    finally:
        for name in ("compose.yaml", ".env", "notes\nwith a line break.txt"):
            (base / name).unlink()
        stack.configure(NAMES)
        assert_ok(stack.run())


def test_a_planted_symlink_is_replaced_not_followed(stack):
    folder = Path(stack.site.base_dir) / "exporters" / "shop"
    target = Path(stack.site.base_dir).parent / "pgmon-faults-elsewhere"
    target.mkdir(exist_ok=True)
    # What a process running as the exporter's uid (the folder's owner) could do on the host.
    run("chmod", "700", str(folder))
    (folder / "pgpass").unlink()
    (folder / "pgpass").symlink_to(target)
    try:
        assert_ok(stack.run())
        assert (
            not (folder / "pgpass").is_symlink()
            and (folder / "pgpass").stat().st_mode & 0o777 == 0o400
        )
        assert not any(target.iterdir())  # nothing written through the link
        assert changed_operations(assert_ok(stack.run())) == []  # and the host converged
    finally:
        run("rm", "-rf", str(target))


def test_a_setgid_parent_converges_in_one_run(stack):
    base = Path(stack.site.base_dir)
    run("chmod", "g+s", str(base), str(base / "exporters"))
    assert_ok(stack.run())
    assert changed_operations(assert_ok(stack.run())) == []
    assert base.stat().st_mode & 0o7777 == 0o755


def test_renaming_grafanas_admin_is_refused_and_changes_nothing(stack):
    before = stack.host_fingerprint()
    stack.configure(NAMES, pgmon_grafana_admin_user="root")
    try:
        result = stack.run()
        output = result.stdout + result.stderr
        assert (
            result.returncode != 0
            and "pgmon_grafana_admin_user: Grafana on this host was set up with the admin 'admin'"
            in output
        ), output[-3000:]
        assert stack.host_fingerprint() == before
    finally:
        stack.configure(NAMES)
