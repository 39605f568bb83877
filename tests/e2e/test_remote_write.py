"""Long-term storage on a real VictoriaMetrics (Debian sid's 1.145, prepare_machine.sh): Prometheus copies every
sample there with basic auth, Grafana reads it back, verification says when the store does not take them,
and an outage leaves no gap once the store is back.

VictoriaMetrics runs as a process on docker0's address (172.17.0.1), where the lab's PostgreSQL listens too:
Prometheus's container reaches it as it would reach a store on the network, and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tasks.stack_model import PROMETHEUS_UID
from tasks.verify_stores import parse_queue_readings

from .grafana_queries import Dashboard, Prometheus
from .lab import (
    DATABASES,
    DOCKER_BRIDGE_IP,
    FLEET_DASHBOARD,
    SCRAPE_SECONDS,
    Site,
    api_auth,
    wait_until,
)
from .test_deploy import assert_ok

pytestmark = pytest.mark.e2e

CACHE = Path(os.environ.get("PGMON_TEST_CACHE", "/var/cache/pgmon-test"))
VICTORIA = CACHE / "vm-root/usr/bin/victoria-metrics"
PORT = 18428
STORE_URL = f"http://{DOCKER_BRIDGE_IP}:{PORT}"
USER = "pgmon"
PASSWORD_ENV = "PGMON_E2E_STORE_PASSWORD"
SITE = Site(
    base_dir="/opt/pgmon-store",
    project="pgmon-store",
    prometheus_port=19590,
    alertmanager_port=19593,
    grafana_port=13500,
)


class Victoria:
    """A VictoriaMetrics single-node server with basic auth, its data in a folder of the test's."""

    def __init__(
        self, data: Path, password: str, address: str = DOCKER_BRIDGE_IP, port: int = PORT
    ):
        self.data, self.password = data, password
        self.listen, self.url = f"{address}:{port}", f"http://{address}:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(VICTORIA),
                f"-storageDataPath={self.data}",
                f"-httpListenAddr={self.listen}",
                f"-httpAuth.username={USER}",
                f"-httpAuth.password={self.password}",
                # One sample per scrape interval per series: what the HA pair's two copies need (docs/storage.md).
                f"-dedup.minScrapeInterval={SCRAPE_SECONDS}s",
                "-search.latencyOffset=1s",  # answer for the last second too: the test reads what just arrived
                "-retentionPeriod=1d",
                "-loggerLevel=WARN",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until("VictoriaMetrics answers", self.healthy, 30)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
            self.process = None

    def query(self, promql: str) -> list[dict]:
        response = requests.get(
            f"{self.url}/api/v1/query",
            params={"query": promql},
            auth=(USER, self.password),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["data"]["result"]

    def timestamps(self, series: str, start: float, end: float) -> list[float]:
        """Every sample of ``series`` between ``start`` and ``end`` (Unix seconds), as the store holds them."""
        response = requests.get(
            f"{self.url}/api/v1/export",
            params={"match[]": series, "start": f"{start:.3f}", "end": f"{end:.3f}"},
            auth=(USER, self.password),
            timeout=10,
        )
        response.raise_for_status()
        lines = [line for line in response.text.splitlines() if line.strip()]
        return sorted(t / 1000 for line in lines for t in json.loads(line)["timestamps"])


class StoreQueries(Prometheus):
    """The store's Prometheus-compatible query API, as Grafana's data source for it asks it."""

    def __init__(self, password: str, url: str = STORE_URL):
        self.url, self.auth = f"{url}/api/v1", (USER, password)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    if not VICTORIA.exists():
        pytest.fail(f"{VICTORIA} is missing: run tests/e2e/prepare_machine.sh")
    store = Victoria(tmp_path_factory.mktemp("victoria"), "st0re:" + secrets.token_hex(8) + "'#%$")
    store.start()
    yield store
    store.stop()


def queue_lag(store: str) -> float:
    """Seconds the store's remote-write queue is behind, from Prometheus's own metrics."""
    metrics = requests.get(
        f"http://127.0.0.1:{SITE.prometheus_port}/metrics",
        auth=api_auth(SITE.prometheus_port),
        timeout=10,
    ).text
    newest, queues = parse_queue_readings(metrics)
    return newest - queues[store].sent_up_to


def largest_gap(timestamps: list[float]) -> float:
    return max(
        (b - a for a, b in zip(timestamps, timestamps[1:], strict=False)), default=float("inf")
    )


def test_samples_reach_the_store_and_an_outage_leaves_no_gap(new_deployment, victoria):
    shop = next(db for db in DATABASES if db.name == "shop")
    with new_deployment("store", databases=(shop,), site=SITE) as deployment:
        deployment.secrets[PASSWORD_ENV] = victoria.password
        store = {
            "name": "victoria",
            "url": f"{STORE_URL}/api/v1/write",
            "username": USER,
            "password_env": PASSWORD_ENV,
            "query_url": STORE_URL,
        }
        # What tells this processing host's series apart in a store others write to as well.
        settings = {"pgmon_remote_write": [store], "pgmon_external_labels": {"site": "lab"}}
        deployment.configure(["shop"], **settings)
        output = assert_ok(deployment.run("-vvv", "--diff"))
        assert re.search(rf"store victoria +ok +{STORE_URL}/api/v1/write takes the samples", output)
        assert victoria.password not in output  # nor in pyinfra's output at its most verbose
        secret = Path(SITE.base_dir, "prometheus/secrets/store-victoria").stat()
        assert (stat.S_IMODE(secret.st_mode), secret.st_uid) == (0o400, PROMETHEUS_UID)
        assert (
            victoria.password.encode()
            not in Path(SITE.base_dir, "prometheus/prometheus.yml").read_bytes()
        )
        wait_until(
            "the store answers for the database",
            lambda: (
                [r["value"][1] for r in victoria.query('pg_up{database="shop", site="lab"}')]
                == ["1"]
            ),
            60,
        )

        # The store away for longer than verification allows: Prometheus keeps scraping, the queue waits.
        victoria.stop()
        outage_start = time.time()
        wait_until("the queue falls behind", lambda: queue_lag("victoria") > 35, 90, interval=1)
        deployment.configure(["shop"], **settings, pgmon_verify_timeout_seconds=15)
        refused = deployment.run()
        outage_end = time.time()
        text = refused.stdout + refused.stderr
        # Grafana's data source for the store fails too: it cannot read the store back.
        assert refused.returncode != 0
        assert re.search(r"pgmon verification failed for [^;]*store victoria", text)
        assert "s behind (more than 30 s)" in text and "wait in Prometheus's WAL" in text
        victoria.start()

        # The backlog arrives: the outage is covered sample by sample (the store keeps one per scrape interval).
        def covered() -> bool:
            samples = victoria.timestamps('pg_up{database="shop"}', outage_start, outage_end)
            return (
                len(samples) >= (outage_end - outage_start) / SCRAPE_SECONDS - 2
                and samples[0] - outage_start <= 2.5 * SCRAPE_SECONDS
                and outage_end - samples[-1] <= 2.5 * SCRAPE_SECONDS
                and largest_gap(samples) <= 2.5 * SCRAPE_SECONDS
            )

        try:
            wait_until("the backlog reaches the store", covered, 120, interval=1)
        except TimeoutError:
            samples = victoria.timestamps('pg_up{database="shop"}', outage_start, outage_end)
            raise AssertionError(
                f"{len(samples)} samples of the {outage_end - outage_start:.0f} s outage in the store, largest "
                f"gap {largest_gap(samples):.1f} s; the queue is {queue_lag('victoria'):.0f} s behind"
            ) from None
        deployment.configure(["shop"], **settings)
        assert "takes the samples" in assert_ok(deployment.run())

        # A password the store refuses: Prometheus drops what it cannot send, and verification says so.
        deployment.secrets[PASSWORD_ENV] = "not-" + victoria.password
        deployment.configure(["shop"], **settings, pgmon_verify_timeout_seconds=15)
        refused = deployment.run()
        text = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "refuses the samples" in text
        assert "its data source for store victoria" in text  # Grafana cannot read it back either
        deployment.secrets[PASSWORD_ENV] = victoria.password
        deployment.configure(["shop"], **settings)
        assert "takes the samples" in assert_ok(deployment.run())
        assert not any(victoria.password in run for run in deployment.outputs)

        # The fleet dashboard reads the store as it reads this host's Prometheus: the same panels have data.
        # (Tables would be empty in both: this test's database has none; test_dashboards.py has a workload.)
        picks = {
            "server": f"host.docker.internal:{shop.port}",
            "database": "shop",
            "instance": "shop",
        }
        model = json.loads(FLEET_DASHBOARD.read_text())
        now = time.time() - 2  # what the store has taken by now
        local = Dashboard(model, Prometheus(SITE.prometheus_port), SCRAPE_SECONDS, now)
        targets = len(list(local.targets()))
        empty_here = local.empty_panels(picks)
        assert targets >= 5 and len(empty_here) < targets / 2, empty_here
        store = Dashboard(model, StoreQueries(victoria.password), SCRAPE_SECONDS, now)
        assert store.empty_panels(picks) == empty_here
