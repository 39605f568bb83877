"""Grafana: the Prometheus datasource, the dashboard provider, and the dashboards it provisions."""

from __future__ import annotations

import json

from ..settings import Settings
from ..stack_model import DASHBOARDS_DIR, PROMETHEUS_PORT, yaml_bytes
from .api_auth import API_USER, PASSWORD_FILE, container_path
from .stores import store_datasources

DATASOURCE_UID = "pgmon-prometheus"
DASHBOARD_9628_UID = "pgmon-postgresql-9628"


def pgmon_dashboard_files() -> dict[str, bytes]:
    """pgmon's own dashboards (files/grafana/dashboards), provisioned as they are in the repository."""
    return {path.name: path.read_bytes() for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def provisioned_dashboard_uids() -> list[str]:
    """The uid of every dashboard pgmon provisions: 9628 first, then its own."""
    return [DASHBOARD_9628_UID] + [
        json.loads(content)["uid"] for content in pgmon_dashboard_files().values()
    ]


def render_grafana_datasource(settings: Settings) -> bytes:
    return yaml_bytes(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": DATASOURCE_UID,
                    "access": "proxy",
                    "url": f"http://prometheus:{PROMETHEUS_PORT}",
                    "isDefault": True,
                    "editable": False,
                    "basicAuth": True,
                    "basicAuthUser": API_USER,
                    "jsonData": {"timeInterval": f"{settings.config.scrape_interval_seconds}s"},
                    # Grafana reads the file when it provisions the data source: this file holds no secret.
                    "secureJsonData": {
                        "basicAuthPassword": f"$__file{{{container_path('grafana', PASSWORD_FILE)}}}"
                    },
                },
                *store_datasources(settings),
            ],
        }
    )


def render_grafana_dashboard_provider() -> bytes:
    return yaml_bytes(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "pgmon",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 10,
                    "options": {"path": "/etc/grafana/dashboards"},
                }
            ],
        }
    )


def bind_dashboard_inputs(dashboard: dict, values: dict[str, str], uid: str) -> dict:
    """Do what Grafana's import does with ``__inputs``: put each value where ``${NAME}`` stands.

    Refuses a dashboard whose inputs are not all given, as Grafana's import does.
    """
    names = [item.get("name") for item in dashboard.get("__inputs", [])]
    missing = [name for name in names if name not in values]
    if missing:
        raise ValueError(f"dashboard needs inputs {missing} that pgmon does not provide")
    text = json.dumps({k: v for k, v in dashboard.items() if k not in ("__inputs", "__requires")})
    for name in names:
        text = text.replace("${" + name + "}", values[name])
    bound = json.loads(text)
    bound["uid"] = uid
    bound["id"] = None
    return bound
