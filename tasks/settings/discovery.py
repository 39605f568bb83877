"""pgmon_servers: PostgreSQL servers whose databases pgmon finds by itself, as they come and go.

Each entry runs two exporters on the processing host: the server's own (server-wide collectors, and the
query that lists the databases, on ``dbname``), and one that probes every database found
(postgres_exporter's multi-target ``/probe``). The list is a file Prometheus discovers targets from
(docs/many-databases.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from .fields import EnvName, Host, Labels, Name, Port, Strict, server_address

# A discovered server's longest probe interval: Prometheus takes a series as gone 5 minutes after its last sample.
LONGEST_PROBE_INTERVAL = 300


def _check_pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(
            f"{value!r} is not a regular expression ({error}); e.g. 'tenant_.*' matches every name "
            "starting with tenant_"
        ) from None
    return value


# A PostgreSQL regular expression matched against a database's whole name.
Pattern = Annotated[str, Field(min_length=1), AfterValidator(_check_pattern)]


class DiscoveredServer(Strict):
    """One server: every database on it the role may connect to, matched by ``include`` and not ``exclude``.

    Example (group_data/all.py):

    .. code:: python

        pgmon_servers = [
            {"name": "tenants-eu", "host": "10.0.0.5", "user": "pgmon", "password_env": "PGMON_EU_PASSWORD",
             "include": ["tenant_.*"]},
        ]
    """

    name: Name
    host: Host
    port: Port = 5432
    # Where the server's own exporter connects: server-wide statistics and the list of databases.
    dbname: str = Field(default="postgres", min_length=1)
    user: str = Field(min_length=1)
    password_env: EnvName
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "require"
    include: list[Pattern] = Field(default=[".*"], min_length=1)
    # Templates and databases that refuse connections are never listed; dbname is watched by the server's own
    # exporter, and databases listed in pgmon_databases by theirs.
    exclude: list[Pattern] = ["postgres"]
    labels: Labels = {}
    # Per-table series for the databases found: False for tenants with many tables (docs/benchmarks.md) ...
    table_metrics: bool = True
    # ... or only for those whose whole name matches one of these: a lighter metric set for noisy tenants.
    light: list[Pattern] = []
    # How often the databases found are probed; None: pgmon_scrape_interval_seconds. Every probe logs in
    # twice, so hundreds of databases on one server take a longer one (docs/many-databases.md).
    scrape_interval_seconds: int | None = Field(default=None, ge=1, le=LONGEST_PROBE_INTERVAL)

    @property
    def server(self) -> str:
        return server_address(self.host, self.port)
