"""Long-term stores (pgmon_remote_write): what Prometheus sends them, and the Grafana data sources that read
them back. A store's password or token is a file in each reader's own secrets folder, named in the
configuration, never in it (docs/storage.md)."""

from __future__ import annotations

from ..settings import RemoteWrite, Settings
from ..settings.cluster import REPLICA_LABEL
from .api_auth import container_path

STORE_DATASOURCE_UID = "pgmon-store-{name}"


def store_secret_file(store: RemoteWrite) -> str:
    """The file, in prometheus/secrets/ and grafana/secrets/, holding ``store``'s password or token."""
    return f"store-{store.name}"


def remote_write_configs(settings: Settings) -> list[dict]:
    """prometheus.yml's ``remote_write``: one queue per store, its credentials read from a file."""
    configs = []
    for store in settings.config.remote_write:
        config: dict = {"name": store.name, "url": store.url}
        secret = container_path("prometheus", store_secret_file(store))
        if store.password_env is not None:
            config["basic_auth"] = {"username": store.username, "password_file": secret}
        elif store.bearer_token_env is not None:
            config["authorization"] = {"type": "Bearer", "credentials_file": secret}
        if store.headers:
            config["headers"] = dict(store.headers)
        if settings.config.cluster is not None:
            config["write_relabel_configs"] = _replica_relabelling(store)
        configs.append(config)
    return configs


def _replica_relabelling(store: RemoteWrite) -> list[dict]:
    """An HA group member's samples as the store deduplicates them: under ``replica_label``, or as one series."""
    renamed = (
        []
        if store.replica_label is None
        else [{"source_labels": [REPLICA_LABEL], "target_label": store.replica_label}]
    )
    return [*renamed, {"action": "labeldrop", "regex": REPLICA_LABEL}]


def _literal(value: str) -> str:
    """``value`` as Grafana's provisioning reads it: it expands $NAME, ${NAME} and $__file{...}, and $$ is a $."""
    return value.replace("$", "$$")


def store_datasources(settings: Settings) -> list[dict]:
    """A Prometheus-type Grafana data source for each store with a ``query_url``."""
    datasources = []
    for store in settings.config.remote_write:
        if store.query_url is None:
            continue
        secret = f"$__file{{{container_path('grafana', store_secret_file(store))}}}"
        json_data: dict = {"timeInterval": f"{settings.config.scrape_interval_seconds}s"}
        secure: dict = {}
        headers = {_literal(name): _literal(value) for name, value in store.headers.items()}
        if store.bearer_token_env is not None:
            headers["Authorization"] = f"Bearer {secret}"
        for number, (name, value) in enumerate(headers.items(), start=1):
            json_data[f"httpHeaderName{number}"] = name
            secure[f"httpHeaderValue{number}"] = value
        datasource = {
            "name": f"{store.name} (store)",
            "type": "prometheus",
            "uid": STORE_DATASOURCE_UID.format(name=store.name),
            "access": "proxy",
            "url": _literal(store.query_url),
            "editable": False,
            "basicAuth": store.password_env is not None,
            "jsonData": json_data,
        }
        if store.password_env is not None:
            datasource["basicAuthUser"] = _literal(store.username)
            secure["basicAuthPassword"] = secret
        if secure:
            datasource["secureJsonData"] = secure
        datasources.append(datasource)
    return datasources
