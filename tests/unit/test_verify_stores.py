"""Verification of the stores, on what Prometheus 3.5.3 printed (tests/fixtures/prometheus-3.5-remote-storage*):
store "vm" a VictoriaMetrics that took the samples, then refused a wrong password; "down" a closed port."""

from pathlib import Path

import pytest

from tasks.settings import build_settings
from tasks.verify_stores import allowed_lag_seconds, check_stores, parse_queue_readings

from .conftest import ENVIRON, group_data

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TAKING = (FIXTURES / "prometheus-3.5-remote-storage.metrics").read_text()
REFUSING = (FIXTURES / "prometheus-3.5-remote-storage-401.metrics").read_text()


class PrometheusAnswering:
    """Prometheus's /metrics and its answer to the failed-samples query, as HostHTTP returns them."""

    def __init__(self, metrics: str, recent: dict[str, float] | None = None, status: int = 200):
        self.metrics, self.recent, self.status = metrics, recent, status
        self.queries: list[str] = []

    def get(self, address, port, path, auth=None):
        assert path == "/metrics" and auth is not None
        return self.status, self.metrics.encode()

    def get_json(self, address, port, path, auth=None):
        self.queries.append(path)
        if self.recent is None:  # fewer than two scrapes of Prometheus itself
            return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
        result = [
            {"metric": {"remote_name": name}, "value": [0, str(value)]}
            for name, value in self.recent.items()
        ]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def store_settings():
    return build_settings(
        group_data(
            pgmon_remote_write=[
                {
                    "name": "vm",
                    "url": "http://127.0.0.1:18428/api/v1/write",
                    "username": "pgmon",
                    "password_env": "PW_LEDGER",
                },
                {"name": "down", "url": "http://127.0.0.1:9/api/v1/write"},
            ]
        ),
        ENVIRON,
    )


def by_store(findings):
    return {f.subject.removeprefix("store "): f for f in findings}


def test_queues_read_from_prometheus_metrics():
    newest, queues = parse_queue_readings(TAKING)
    assert newest == 1.796580847e09
    assert queues["vm"].sent_up_to == newest - 2 and queues["vm"].samples_sent == 8000
    assert queues["down"].sent_up_to == 0 and queues["down"].samples_failed == 0
    newest, refusing = parse_queue_readings(REFUSING)
    assert refusing["vm"].samples_failed == 12000 and refusing["vm"].sent_up_to == newest - 1


def test_a_store_taking_the_samples_passes_and_a_closed_port_fails(store_settings):
    findings = by_store(check_stores(store_settings, PrometheusAnswering(TAKING, {"vm": 0})))
    assert findings["vm"].ok and "takes the samples, 2 s behind" in findings["vm"].detail
    assert not findings["down"].ok and "nothing sent yet" in findings["down"].detail
    assert "grep -i remote" in findings["down"].hint


def test_a_refused_password_fails_though_the_queue_moves_on(store_settings):
    # Prometheus drops what a store refuses with 401 and sends on: the queue is not behind.
    for recent in ({"vm": 6000.0}, None):  # failing lately; or too soon to know, the counter alone
        findings = by_store(check_stores(store_settings, PrometheusAnswering(REFUSING, recent)))
        assert not findings["vm"].ok
        assert "refuses the samples, 12000 samples failed" in findings["vm"].detail
    # Failures that stopped (the password fixed): passes, still saying how many were lost.
    findings = by_store(check_stores(store_settings, PrometheusAnswering(REFUSING, {"vm": 0})))
    assert findings["vm"].ok and "12000 samples failed" in findings["vm"].detail


def test_a_queue_behind_fails_naming_how_far(store_settings):
    limit = allowed_lag_seconds(store_settings)
    behind = TAKING.replace(
        "prometheus_remote_storage_highest_timestamp_in_seconds 1.796580847e+09",
        f"prometheus_remote_storage_highest_timestamp_in_seconds {1.796580845e09 + limit + 60!r}",
    )
    assert behind != TAKING
    findings = by_store(check_stores(store_settings, PrometheusAnswering(behind, {"vm": 0})))
    assert not findings["vm"].ok
    assert f"{limit + 60} s behind (more than {limit} s)" in findings["vm"].detail
    assert "wait in Prometheus's WAL" in findings["vm"].detail


def test_prometheus_not_answering_fails_every_store(store_settings):
    findings = check_stores(store_settings, PrometheusAnswering("", status=0))
    assert [f.ok for f in findings] == [False, False]


def test_no_store_no_finding(settings):
    assert check_stores(settings, PrometheusAnswering(TAKING)) == []
