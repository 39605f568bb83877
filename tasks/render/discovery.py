"""Discovered servers (settings/discovery.py): the query that lists a server's databases as Prometheus
targets, the script that writes them to a file, and the probing exporter's login.

The list is made by PostgreSQL itself: the server's own exporter runs ``pgmon_discovery`` (one row per
database, each carrying its whole file-discovery entry as JSON built by PostgreSQL, so no name needs
escaping by a shell), and files/discovery/discover.sh, started in that exporter's container, copies the
rows into ``discovered/<server>.json`` each scrape interval. Prometheus reads that file and scrapes each
database through the server's probing exporter (``/probe?target=...&auth_module=<server>``).
"""

from __future__ import annotations

import json

from ..settings import DiscoveredServer, Settings
from ..stack_model import (
    EXPORTER_PORT,
    FILES_DIR,
    discovered_file,
    light_service,
    tenants_service,
    yaml_bytes,
)
from .exporters import EXPORTER_CONFIG_DIR, query_entry

DISCOVER_SCRIPT = FILES_DIR / "discovery" / "discover.sh"
DISCOVER_SCRIPT_PATH = f"{EXPORTER_CONFIG_DIR}/discover.sh"
AUTH_CONFIG_PATH = f"{EXPORTER_CONFIG_DIR}/auth.yml"
# The metric the list comes out as: 1 per database found, and one row of 0 that says the listing ran.
LISTED_METRIC = "pgmon_discovery_listed"


def sql_string(value: str) -> str:
    """A PostgreSQL string constant that means ``value`` whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _any_of(patterns: list[str]) -> str:
    return sql_string("^(?:" + "|".join(f"(?:{p})" for p in patterns) + ")$")


def listed_elsewhere(settings: Settings, server: DiscoveredServer) -> list[str]:
    """The databases of ``server`` that have an exporter of their own: its ``dbname`` and those listed."""
    names = [server.dbname]
    names += [
        db.dbname
        for db in settings.config.databases
        if (db.host, db.port) == (server.host, server.port)
    ]
    return sorted(set(names))


def discovery_query(settings: Settings, server: DiscoveredServer) -> dict:
    """The queries.yaml entry that lists ``server``'s databases, each as a file-discovery entry (JSON)."""
    tenant = f"{sql_string(server.name + '/')} || datname"
    static_labels = {
        **server.labels,
        "__metrics_path__": "/probe",
        "__param_auth_module": server.name,
        "server": server.server,
        "discovered_by": server.name,
    }
    if server.scrape_interval_seconds:
        # Prometheus's own per-target interval: the job's timeout (the global interval's, or 10 s) still holds.
        static_labels["__scrape_interval__"] = f"{server.scrape_interval_seconds}s"
    # The database's name in the probe's URL, percent-encoded character by character (UTF-8).
    encoded = (
        "(SELECT string_agg(CASE WHEN c ~ '^[A-Za-z0-9_.~-]$' THEN c"
        " ELSE regexp_replace(upper(encode(convert_to(c, 'UTF8'), 'hex')), '(..)', E'%\\\\1', 'g') END,"
        " '' ORDER BY n) FROM regexp_split_to_table(datname, '') WITH ORDINALITY AS chars(c, n))"
    )
    prober = sql_string(f"{tenants_service(server.name)}:{EXPORTER_PORT}")
    if server.light:
        light = sql_string(f"{light_service(server.name)}:{EXPORTER_PORT}")
        prober = f"CASE WHEN datname ~ {_any_of(server.light)} THEN {light} ELSE {prober} END"
    entry = (
        f"json_build_object('targets', json_build_array({prober}), 'labels', "
        f"{sql_string(json.dumps(static_labels, sort_keys=True, ensure_ascii=False))}::jsonb || jsonb_build_object("
        f"'database', {tenant}, 'instance', {tenant}, "
        f"'__param_target', {sql_string(f'postgresql://{server.server}/')} || {encoded}))::text"
    )
    conditions = [
        "datallowconn",
        "NOT datistemplate",
        "has_database_privilege(datname, 'CONNECT')",
        # postgres_exporter (0.19) splits the probe's connection string at spaces, and a failed split writes
        # it, password included, into its log: such a name is left out (docs/many-databases.md).
        "datname !~ '[[:space:]]'",
        f"datname ~ {_any_of(server.include)}",
        *([f"datname !~ {_any_of(server.exclude)}"] if server.exclude else []),
        "datname <> ALL (ARRAY["
        + ", ".join(sql_string(n) for n in listed_elsewhere(settings, server))
        + "])",
    ]
    sql = (
        "SELECT '' AS tenant, '' AS target_group, 0 AS listed UNION ALL "
        f"(SELECT {tenant}, {entry}, 1 FROM pg_database WHERE {' AND '.join(conditions)} "
        "ORDER BY datname)"
    )
    return query_entry(
        sql,
        ("tenant", "LABEL", "A database found: <server entry>/<name>; empty on the row of 0"),
        ("target_group", "LABEL", "Its file-discovery entry (JSON)"),
        ("listed", "GAUGE", "1 per database found; one row of 0 says the listing ran"),
    )


def render_auth_config(server: DiscoveredServer, password: str) -> bytes:
    """The probing exporter's --config.file: one auth module, named after the server, with its login."""
    return yaml_bytes(
        {
            "auth_modules": {
                server.name: {
                    "type": "userpass",
                    "userpass": {"username": server.user, "password": password},
                    "options": {"sslmode": server.sslmode},
                }
            }
        }
    )


def discovery_entrypoint(server: DiscoveredServer, interval_seconds: int) -> list[str]:
    """The server exporter's entrypoint: discover.sh in the background, then postgres_exporter as PID 1."""
    script = (
        f"sh {DISCOVER_SCRIPT_PATH} {discovered_file(server.name)} {interval_seconds} "
        f'http://127.0.0.1:{EXPORTER_PORT}/metrics & exec /bin/postgres_exporter "$@"'
    )
    return ["/bin/sh", "-c", script, "postgres_exporter"]
