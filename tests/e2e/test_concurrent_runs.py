"""Two admins deploying to one host at once: one applies, the other is refused clearly and changes nothing.

Each admin has a project folder of their own (their own checkout), both aimed at the lab's base_dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tasks.host_state import lock_path

from .lab import BASE_DIR, Deployment

pytestmark = pytest.mark.e2e

BASE = ["shop", "billing"]
VERIFYING = "Verify pgmon over HTTP"  # printed once a run is past its changes: the lock is held
REFUSALS = ("another pgmon run is changing", "the host changed since this run read it")


@pytest.fixture(scope="module")
def admins(new_deployment, lab, discord, telegram, dashboard_server, tmp_path_factory):
    with new_deployment("admin-a") as first:
        second = Deployment(
            lab, tmp_path_factory.mktemp("admin-b"), discord, telegram, dashboard_server
        )
        # The team's one secret_key for this host's Grafana (its other secrets may differ: a new admin password
        # is reset in place, another key is refused).
        key = "PGMON_E2E_GRAFANA_SECRET_KEY"
        second.secrets[key] = first.secrets[key]
        first.configure(BASE)
        result = first.run()
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        yield first, second


def with_unreachable_database(deployment: Deployment, names: list[str]) -> None:
    """``names`` plus a database whose password is wrong: verification keeps polling (and the run holding the
    host) until its timeout."""
    databases = deployment.group_data(names)["pgmon_databases"]
    wrong = {
        **databases[0],
        "name": "wrong-password",
        "dbname": "postgres",
        "password_env": deployment.password_env("ledger"),
    }
    deployment.configure(
        names, pgmon_databases=databases + [wrong], pgmon_verify_timeout_seconds=600
    )


def exporters(deployment: Deployment) -> set[str]:
    return {
        name.removeprefix("exporter-")
        for name in deployment.containers()
        if name.startswith("exporter-")
    }


def test_two_deploys_at_once_never_undo_each_other_silently(admins):
    first, second = admins
    first.configure(BASE + ["ledger"])
    second.configure(BASE + ["analytics"])
    runs = {"ledger": first.project.start(), "analytics": second.project.start()}
    results = {added: run.finish() for added, run in runs.items()}
    outputs = "".join(output[-3000:] for _, output in results.values())
    for code, output in results.values():
        # Each run either applied and verified, or was refused before changing anything; none ran into the
        # other's changes (a removed exporter, a verification timeout).
        assert "verification failed" not in output and "does not answer" not in output, outputs
        assert code == 0 or (
            "This run changed nothing" in output and any(refusal in output for refusal in REFUSALS)
        ), outputs
    succeeded = [added for added, (code, _) in results.items() if code == 0]
    assert succeeded, outputs
    assert exporters(first) in [set(BASE) | {added} for added in succeeded]
    for added, (code, _) in results.items():
        if code != 0:  # the refused admin runs again and applies on top of what the other one did
            result = (first if added == "ledger" else second).run()
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
            assert exporters(first) == set(BASE) | {added}


def test_a_hung_run_blocks_naming_its_holder_until_taken_over(admins):
    first, second = admins
    with_unreachable_database(
        first, BASE + ["ledger", "analytics"]
    )  # differs from whatever the host has
    hung = first.project.start()
    try:
        hung.wait_for(VERIFYING)
        os.kill(
            hung.process.pid, signal.SIGSTOP
        )  # its SSH connection stays open: the lock stays held
        second.configure(BASE)
        refused = second.run()
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "another pgmon run is changing " in output, output[
            -3000:
        ]
        assert f", for {BASE_DIR}. This run changed nothing" in output, output[-3000:]
        assert (
            "(SSH user) from " in output
            and " since 20" in output
            and "pgmon_take_over_lock=true" in output
        )
        taken = second.run("--data", "pgmon_take_over_lock=true")
        assert taken.returncode == 0, (taken.stdout + taken.stderr)[-4000:]
        assert exporters(second) == set(BASE)
    finally:
        hung.process.kill()
        hung.finish()


def test_a_killed_run_leaves_no_lock_behind(admins):
    first, second = admins
    with_unreachable_database(first, BASE + ["ledger"])
    killed = first.project.start()
    killed.wait_for(VERIFYING)
    assert Path(lock_path() + ".holder").exists()
    killed.process.kill()
    killed.finish()
    second.configure(BASE)
    result = second.run()
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert exporters(second) == set(BASE)


def test_a_local_user_can_neither_forge_the_holder_nor_hold_the_lock(admins):
    """Any account on the host (here nobody) tries what worked while the lock was in /run/lock: a record
    naming a root process, and holding the lock. Both are refused, and a take-over kills nothing."""
    _, second = admins
    bystander = subprocess.Popen(["sleep", "600"])  # root's: the process a forged record would name
    lock = lock_path()
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c"]
    try:
        for attempt in (
            f'echo "by=mallory from=x pid={bystander.pid} since=now" > {lock}.holder',
            f"flock -n {lock}.lock true",
        ):
            forged = subprocess.run([*as_nobody, attempt], capture_output=True, text=True)
            assert forged.returncode != 0 and "Permission denied" in forged.stderr, attempt
        second.configure(BASE + ["ledger"])  # differs from the host: the run claims it
        taken = second.run("--data", "pgmon_take_over_lock=true")
        assert taken.returncode == 0, (taken.stdout + taken.stderr)[-4000:]
        assert bystander.poll() is None
        assert exporters(second) == set(BASE) | {"ledger"}
    finally:
        bystander.kill()
        bystander.wait()
