"""postgres_exporter: which collectors each exporter runs, its extra query, and how it finds its database."""

from __future__ import annotations

from urllib.parse import quote

from ..settings import Database, Settings
from ..stack_model import EXPORTER_PORT, yaml_bytes

# Collectors that read server-wide views. Only one exporter per PostgreSQL
# server runs them, so several databases on one server do not multiply these
# series; the others keep the per-database (table and index) collectors.
SERVER_WIDE_COLLECTORS = (
    "database",
    "locks",
    "replication",
    "replication_slot",
    "roles",
    "stat_bgwriter",
    "stat_database",
    "wal",
)
# Server-wide collectors postgres_exporter leaves off, turned on in that same one exporter: the server's
# start time and transaction ID age per database (for the alert rules), and PostgreSQL 17's checkpoint
# counters (for dashboard 9628; the collector skips older servers without querying them).
SERVER_WIDE_OPT_IN_COLLECTORS = ("postmaster", "database_wraparound", "stat_checkpointer")
EXPORTER_QUERIES = "/etc/postgres_exporter/queries.yaml"


def render_exporter_queries() -> bytes:
    """A query every exporter runs: ``pgmon_database_info{datname=<its database>} 1``.

    With the target labels (``database``, ``server``) it tells the alert rules which configured
    database a server-wide row (by ``datname``) is about, so adding a database changes no rule.
    (postgres_exporter 0.17 marks --extend.query-path deprecated; it is its only way to add a query.)
    """
    return yaml_bytes(
        {
            "pgmon_database": {
                "query": "SELECT current_database() AS datname, 1 AS info",
                "metrics": [
                    {"datname": {"usage": "LABEL", "description": "The database this exporter connects to"}},
                    {"info": {"usage": "GAUGE", "description": "Always 1; pgmon's rules join on it"}},
                ],
            }
        }
    )


def server_primaries(settings: Settings) -> set[str]:
    """Names of the databases whose exporter runs the server-wide collectors (first per server)."""
    primaries: dict[tuple[str, int], str] = {}
    for db in settings.databases:
        primaries.setdefault((db.host, db.port), db.name)
    return set(primaries.values())


def exporter_flags(primary: bool, statements: bool = False, tables: bool = True) -> list[str]:
    """``statements``: the database has pg_stat_statements (whose view lists every database's statements).

    ``tables``: keep the per-table collectors; False drops the largest share of series for many-table databases.
    """
    flags = [f"--web.listen-address=:{EXPORTER_PORT}", "--log.level=warn", f"--extend.query-path={EXPORTER_QUERIES}"]
    if not tables:
        flags += ["--no-collector.stat_user_tables", "--no-collector.statio_user_tables"]
    if statements:
        # Only where the extension is: elsewhere the query fails, and PostgreSQL logs it, at every scrape.
        flags.append("--collector.stat_statements")
    if primary:
        return flags + [f"--collector.{name}" for name in SERVER_WIDE_OPT_IN_COLLECTORS]
    return flags + ["--disable-default-metrics", "--disable-settings-metrics"] + [
        f"--no-collector.{name}" for name in SERVER_WIDE_COLLECTORS
    ]


def data_source_uri(db: Database) -> str:
    """host:port/dbname?sslmode=… as postgres_exporter wants it, the database name URL-escaped."""
    return f"{db.server}/{quote(db.dbname, safe='')}?sslmode={db.sslmode}"
