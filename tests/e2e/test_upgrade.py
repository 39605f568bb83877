"""An upgrade is a re-run: a stack deployed by the last release (its code, its default images: Prometheus 2.53,
Alertmanager 0.28, postgres_exporter 0.17, node_exporter 1.9) re-run with this checkout's code and the suite's
builds of the new lines keeps Prometheus's history and Grafana's data, verifies, and still alerts.

The release is read from git (`git archive`), so it runs as it was, with nothing of this checkout on its path.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from .lab import GRAFANA_PORT, REPO, wait_until
from .test_deploy import assert_ok, changed_operations
from .test_faults import samples_before

pytestmark = pytest.mark.e2e

RELEASE = "80bde13"  # main before the move to Prometheus 3 and Alertmanager 0.33
RELEASE_IMAGES = {  # what that release deployed by default
    "prometheus": "prom/prometheus:v2.53.3",
    "alertmanager": "prom/alertmanager:v0.28.1",
    "postgres_exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
    "node_exporter": "prom/node-exporter:v1.9.0",
    "grafana": "grafana/grafana:12.2.1",
}
NAMES = ["shop", "billing", "ledger"]
KEPT = "pgmon-upgrade-kept"


@pytest.fixture(scope="module")
def released(deployment, tmp_path_factory):
    """The stack as the release left it, with history in Prometheus and a dashboard saved in Grafana."""
    code = tmp_path_factory.mktemp("release")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", RELEASE], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    group_data = {**deployment.group_data(NAMES), "pgmon_images": RELEASE_IMAGES}
    # Newer than the release, which refuses settings it does not know.
    del group_data["pgmon_grafana_https"], group_data["pgmon_grafana_secret_key_env"]
    deployment.project.write(deployment.lab.inventory_source(), group_data)
    deployment.project.environment["PYTHONPATH"] = str(code)  # its own `tasks`, not this checkout's
    try:
        output = assert_ok(deployment.project.pyinfra(deploy=str(code / "deploy.py")))
    finally:
        del deployment.project.environment["PYTHONPATH"]
    assert "prometheus        ok" in output
    image = subprocess.run(
        ["docker", "inspect", "-f", "{{.Config.Image}}", deployment.containers()["prometheus"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert image == RELEASE_IMAGES["prometheus"]
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    body = {
        "dashboard": {"uid": KEPT, "title": "Saved before the upgrade", "panels": []},
        "overwrite": True,
    }
    assert (
        requests.post(
            f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/db", json=body, auth=auth, timeout=10
        ).status_code
        == 200
    )
    wait_until(
        "history from the release's Prometheus", lambda: samples_before(time.time()) >= 3, 60
    )
    return deployment, time.time()


def test_the_upgrade_is_a_re_run_that_keeps_history_and_data(released):
    deployment, upgraded_at = released
    deployment.configure(NAMES)  # this checkout's defaults for the suite: lab.TESTED_IMAGES
    before = deployment.containers()
    refused = deployment.run()
    assert (
        refused.returncode != 0 and "public default secret_key" in refused.stdout + refused.stderr
    )
    assert deployment.containers() == before  # nothing was changed: the release's containers run on
    # The choice the refusal offers that keeps Grafana's data: its default key, for this host.
    deployment.configure(NAMES, pgmon_grafana_secret_key_env=None)
    output = assert_ok(deployment.run())
    for component in ("prometheus", "alertmanager", "grafana"):
        assert f"pgmon: {component}" in output
    images = {
        service: subprocess.run(
            ["docker", "inspect", "-f", "{{.Config.Image}}", cid],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for service, cid in deployment.containers().items()
    }
    assert (
        images["prometheus"] == "prom/prometheus:v3.5.3"
        and images["alertmanager"] == "prom/alertmanager:v0.33.1"
    )
    assert samples_before(upgraded_at) >= 3  # Prometheus 3 reads what 2.53 wrote
    auth = ("admin", deployment.secrets["PGMON_E2E_GRAFANA_PASSWORD"])
    assert (
        requests.get(
            f"http://127.0.0.1:{GRAFANA_PORT}/api/dashboards/uid/{KEPT}", auth=auth, timeout=10
        ).status_code
        == 200
    )
    base = Path(deployment.site.base_dir)
    assert not list(
        base.glob("exporters/*/password")
    )  # the release's password files, replaced by pgpass
    assert (
        base / "alertmanager/alertmanager.yml"
    ).stat().st_mode & 0o777 == 0o644  # no secret in it now
    assert (
        changed_operations(assert_ok(deployment.run())) == []
    )  # and the next run has nothing to do
    assert not (base / "grafana/secrets/secret_key").exists()


def test_alerts_still_reach_both_channels_after_the_upgrade(released, lab):
    deployment, _ = released
    deployment.discord.clear()
    deployment.telegram.clear()
    lab.stop_cluster(5433)
    try:
        for channel in (deployment.discord, deployment.telegram):
            channel.wait_for(lambda m: "PostgresDown" in m.text and "ledger" in m.text, timeout=90)
    finally:
        lab.start_cluster(5433)
    for channel in (deployment.discord, deployment.telegram):
        channel.wait_for(lambda m: "RESOLVED" in m.text.upper() and "ledger" in m.text, timeout=90)
