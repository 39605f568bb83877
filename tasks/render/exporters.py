"""postgres_exporter: which collectors each exporter runs, its extra queries, and how it finds its database."""

from __future__ import annotations

import functools

from ..settings import Database, Settings
from ..stack_model import EXPORTER_PORT, yaml_bytes

# Collectors that read server-wide views, on by default. Only one exporter per PostgreSQL server runs them,
# so several databases on one server do not multiply these series; the others keep the per-database (table and
# index) collectors. postgres_exporter refuses a flag naming a collector it does not have, so each is turned off
# only in the versions that have it by that name: [since, until).
SERVER_WIDE_COLLECTORS: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {
    "database": ((0, 0), None),
    "locks": ((0, 0), None),
    "replication": ((0, 0), None),
    "replication_slot": (
        (0, 0),
        (0, 20),
    ),  # renamed in 0.20, with its metrics (pg_replication_slots_*)
    "replication_slots": ((0, 20), None),
    "roles": ((0, 0), None),
    "stat_bgwriter": ((0, 0), None),
    "stat_database": ((0, 0), None),
    "wal": ((0, 0), None),
    "stat_progress_vacuum": ((0, 19), None),
    # Default metrics until 0.20 (off with --disable-default-metrics), standalone collectors since.
    "settings": ((0, 20), None),
    "stat_activity": ((0, 20), None),
    "stat_archiver": ((0, 20), None),
    "stat_replication": ((0, 20), None),
}
# Server-wide collectors postgres_exporter leaves off, turned on in that same one exporter: the server's
# start time and transaction ID age per database (for the alert rules), and PostgreSQL 17's checkpoint
# counters (for dashboard 9628; the collector skips older servers without querying them).
SERVER_WIDE_OPT_IN_COLLECTORS = ("postmaster", "database_wraparound", "stat_checkpointer")
EXPORTER_CONFIG_DIR = (
    "/etc/postgres_exporter"  # the exporter's own folder under base_dir, mounted read-only
)
EXPORTER_QUERIES = f"{EXPORTER_CONFIG_DIR}/queries.yaml"
# A discovered server's light prober: the same folder, its queries without TABLE_QUERIES.
LIGHT_QUERIES = "light-queries.yaml"
EXPORTER_PASSFILE = f"{EXPORTER_CONFIG_DIR}/pgpass"


def query_entry(sql: str, *metrics: tuple[str, str, str]) -> dict:
    """A queries.yaml entry: the SQL (one line) and its columns as (name, usage, description)."""
    return {
        "query": " ".join(line.strip() for line in sql.strip().splitlines()),
        "metrics": [
            {name: {"usage": usage, "description": description}}
            for name, usage, description in metrics
        ],
    }


# The characters XML 1.0 forbids that a PostgreSQL text can hold, as a regular expression's bracket.
_XML_INVALID = (
    "'[' || chr(1) || '-' || chr(8) || chr(11) || chr(12) || chr(14) || '-' || chr(31) || ']'"
)
# U+FFFD, or ? where the database's encoding lacks it: chr() of a constant is computed, and fails, when planned.
_REPLACEMENT = "chr(CASE current_setting('server_encoding') WHEN 'UTF8' THEN 65533 ELSE 63 END)"


def since_version(sql_by_version: dict[int, str], **columns: str) -> str:
    """A query that runs, of ``sql_by_version`` (server_version_num it needs -> SQL), the one for the newest
    version the server has, and returns no row on an older server. ``columns``: each column's name and SQL
    type, as the SQL returns them.

    Each SQL is only text handed to query_to_xml, planned on a server the CASE picked it for: a server never
    sees a view or column it lacks (postgres_exporter 0.19.1 ran a query on 15 despite a queries.yaml
    ``runonserver: ">=17.0.0"``). XMLTABLE reads the rows back, undoing query_to_xml's escaping of names.
    Needs PostgreSQL built with libxml, as Debian's and the official images are.

    XML 1.0 has no control characters, and one in a text value (a table named so) fails the whole query: text
    columns get U+FFFD in their place (``?`` in a database whose encoding has no U+FFFD).
    """
    outputs = ", ".join(
        f"regexp_replace({name}, {_XML_INVALID}, {_REPLACEMENT}, 'g') AS {name}"
        if sql_type == "text"
        else name
        for name, sql_type in columns.items()
    )
    cases = " ".join(
        f"WHEN current_setting('server_version_num')::int >= {version} THEN "
        + "'"
        + f"SELECT {outputs} FROM ({' '.join(line.strip() for line in sql.strip().splitlines())}) AS q".replace(
            "'", "''"
        )
        + "'"
        for version, sql in sorted(sql_by_version.items(), reverse=True)
    )
    paths = ", ".join(f"{name} {sql_type} PATH '{name}'" for name, sql_type in columns.items())
    return (
        "SELECT x.* FROM XMLTABLE('/table/row' PASSING query_to_xml("
        f"CASE {cases} ELSE 'SELECT WHERE false' END, true, false, '') COLUMNS {paths}) AS x"
    )


def versioned_query(sql_by_version: dict[int, str], *metrics: tuple[str, str, str]) -> dict:
    """A queries.yaml entry of ``since_version``'s query, its columns read back as the metrics say: labels as
    text, values as float8."""
    columns = {name: "text" if usage == "LABEL" else "float8" for name, usage, _ in metrics}
    return query_entry(since_version(sql_by_version, **columns), *metrics)


# pg_stat_io's row labels.
IO_LABEL_COLUMNS = (
    (
        "backend_type",
        "LABEL",
        "Who did the I/O: client backend, autovacuum worker, checkpointer, ...",
    ),
    ("object", "LABEL", "relation, temp relation, or wal (PostgreSQL 18)"),
    ("context", "LABEL", "normal, vacuum, bulkread, bulkwrite, init"),
)


# Every exporter, about its own database. Each series is named <query>_<column>.
DATABASE_QUERIES = {
    # pgmon_database_info{datname=<its database>} 1: with the target labels (database, server) it tells the
    # alert rules which configured database a server-wide row (by datname) is about, so adding a database
    # changes no rule.
    "pgmon_database": query_entry(
        "SELECT current_database() AS datname, 1 AS info",
        ("datname", "LABEL", "The database this exporter connects to"),
        ("info", "GAUGE", "Always 1; pgmon's rules join on it"),
    ),
    # pgmon_sequence_used_percent: how much of its range each sequence has used, up to the smaller of its
    # own limit and that of the integer column owning it (a bigint sequence feeding an integer column stops at
    # 2^31-1). Cycling sequences never run out; a sequence the monitoring user may not read has no
    # last_value here (GRANT SELECT on it: docs/alerts.md), nor one never used.
    "pgmon_sequence": query_entry(
        """
        SELECT s.schemaname, s.sequencename,
          100 * CASE WHEN s.increment_by > 0
            THEN (s.last_value::float8 - s.min_value::float8)
              / (LEAST(s.max_value, CASE t.typname WHEN 'int2' THEN 32767 WHEN 'int4' THEN 2147483647 END)::float8
                 - s.min_value::float8)
            ELSE (s.max_value::float8 - s.last_value::float8)
              / (s.max_value::float8 - GREATEST(s.min_value,
                   CASE t.typname WHEN 'int2' THEN -32768 WHEN 'int4' THEN -2147483648 END)::float8)
          END AS used_percent
        FROM pg_sequences s
        JOIN pg_namespace n ON n.nspname = s.schemaname
        JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename
        LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        LEFT JOIN pg_type t ON t.oid = a.atttypid
        WHERE NOT s.cycle AND s.last_value IS NOT NULL
        """,
        ("schemaname", "LABEL", "Schema of the sequence"),
        ("sequencename", "LABEL", "Name of the sequence"),
        ("used_percent", "GAUGE", "Share of the sequence's range already used (0-100)"),
    ),
    # pgmon_role_*: what the monitoring role may do beyond pg_monitor, for verification's least-privilege warning.
    "pgmon_role": query_entry(
        """
        SELECT rolsuper::int AS superuser,
          (rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)::int AS extra_attributes,
          (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) AS writable_tables
        FROM pg_roles WHERE rolname = current_user
        """,
        ("superuser", "GAUGE", "1 if the monitoring role is a superuser"),
        (
            "extra_attributes",
            "GAUGE",
            "1 if it may create roles or databases, replicate or bypass row security",
        ),
        ("writable_tables", "GAUGE", "Tables of this database the monitoring role may write"),
    ),
}
# Only the first exporter of each server: these read server-wide views, like SERVER_WIDE_COLLECTORS.
SERVER_QUERIES = {
    # pgmon_wal_receiver_streaming: 1 while this server (a replica) streams WAL from its upstream, else 0
    # (postgres_exporter's stat_wal_receiver collector skips a receiver without a replication slot);
    # pgmon_wal_receiver_configured: 1 where primary_conninfo is set, so a standby fed from the archive
    # only is not expected to stream (pg_monitor may read the setting: pg_read_all_settings);
    # pgmon_wal_receiver_unreplayed_bytes: WAL this replica received and has not replayed yet, the bytes
    # beside ReplicationLag's seconds (0 where nothing streamed in: a primary, a standby fed from the archive).
    "pgmon_wal_receiver": query_entry(
        """
        SELECT count(*) FILTER (WHERE status = 'streaming') AS streaming,
          (SELECT count(*) FROM pg_settings WHERE name = 'primary_conninfo' AND setting <> '') AS configured,
          greatest(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0) AS unreplayed_bytes
        FROM pg_stat_wal_receiver
        """,
        ("streaming", "GAUGE", "WAL receivers streaming from an upstream server (0 or 1)"),
        ("configured", "GAUGE", "1 when primary_conninfo is set"),
        ("unreplayed_bytes", "GAUGE", "WAL received and not replayed yet, in bytes"),
    ),
    # pgmon_settings_pending_restart{name}: a row per setting changed in the configuration but not in effect
    # until a restart; no row when none waits.
    "pgmon_settings": query_entry(
        "SELECT name, 1 AS pending_restart FROM pg_settings WHERE pending_restart",
        ("name", "LABEL", "The setting"),
        ("pending_restart", "GAUGE", "1: the setting waits for a restart"),
    ),
    # pgmon_stat_database_checksum_failures{datname}: data page checksum failures per database since the
    # statistics were reset (shared catalogs: no datname). No row where data checksums are off (NULL).
    "pgmon_stat_database": query_entry(
        """
        SELECT COALESCE(datname, '') AS datname, checksum_failures
        FROM pg_stat_database WHERE checksum_failures IS NOT NULL
        """,
        ("datname", "LABEL", "The database; empty for shared catalogs"),
        ("checksum_failures", "COUNTER", "Data page checksum failures detected"),
    ),
    # pgmon_stat_io_backend_writes and _fsyncs: shared buffers written, and files synced, by backends other
    # than the background writer and checkpointer; what pg_stat_bgwriter's buffers_backend and
    # buffers_backend_fsync counted before PostgreSQL 17 moved them to pg_stat_io (dashboard 9628 reads
    # them). No row before 17.
    "pgmon_stat_io_backend": versioned_query(
        {
            170000: """
            SELECT COALESCE(sum(writes), 0) AS writes, COALESCE(sum(fsyncs), 0) AS fsyncs FROM pg_stat_io
            WHERE object = 'relation' AND backend_type NOT IN ('background writer', 'checkpointer')
            """
        },
        (
            "writes",
            "COUNTER",
            "Shared buffers written by backends (pg_stat_bgwriter's buffers_backend)",
        ),
        ("fsyncs", "COUNTER", "Files backends had to fsync themselves (buffers_backend_fsync)"),
    ),
    # pgmon_stat_io_{reads,writes,extends,fsyncs}{backend_type, object, context}: I/O operations by who did
    # them, on what and why (pg_stat_io, PostgreSQL 16 on; postgres_exporter has no collector for it). A
    # column that does not apply to a row (NULL) counts 0; rows where none applies are left out.
    "pgmon_stat_io": versioned_query(
        {
            160000: """
            SELECT backend_type, object, context, COALESCE(reads, 0) AS reads,
              COALESCE(writes, 0) AS writes, COALESCE(extends, 0) AS extends, COALESCE(fsyncs, 0) AS fsyncs
            FROM pg_stat_io WHERE COALESCE(reads, writes, extends, fsyncs) IS NOT NULL
            """
        },
        *IO_LABEL_COLUMNS,
        ("reads", "COUNTER", "Read operations"),
        ("writes", "COUNTER", "Write operations"),
        ("extends", "COUNTER", "Relation extend operations"),
        ("fsyncs", "COUNTER", "fsync calls"),
    ),
    # pgmon_stat_io_bytes_{read,written,extended}: the same rows in bytes, which PostgreSQL 18 counts itself (it
    # dropped op_bytes: its WAL rows are not in blocks). No row before 18.
    "pgmon_stat_io_bytes": versioned_query(
        {
            180000: """
            SELECT backend_type, object, context, COALESCE(read_bytes, 0) AS read,
              COALESCE(write_bytes, 0) AS written, COALESCE(extend_bytes, 0) AS extended
            FROM pg_stat_io WHERE COALESCE(read_bytes, write_bytes, extend_bytes) IS NOT NULL
            """
        },
        *IO_LABEL_COLUMNS,
        ("read", "COUNTER", "Bytes read"),
        ("written", "COUNTER", "Bytes written"),
        ("extended", "COUNTER", "Bytes added by relation extends"),
    ),
    # pgmon_wal_io_{writes,syncs,generated_bytes}: WAL written to and synced on disk, and WAL generated;
    # PostgreSQL 18 moved the first two from pg_stat_wal to pg_stat_io's WAL rows. PostgreSQL 14 on.
    "pgmon_wal_io": versioned_query(
        {
            180000: """
            SELECT COALESCE(sum(writes), 0) AS writes, COALESCE(sum(fsyncs), 0) AS syncs,
              (SELECT wal_bytes FROM pg_stat_wal) AS generated_bytes
            FROM pg_stat_io WHERE object = 'wal'
            """,
            140000: """
            SELECT wal_write AS writes, wal_sync AS syncs, wal_bytes AS generated_bytes FROM pg_stat_wal
            """,
        },
        ("writes", "COUNTER", "WAL writes to disk"),
        ("syncs", "COUNTER", "WAL syncs to disk"),
        ("generated_bytes", "COUNTER", "WAL generated, in bytes"),
    ),
    # pgmon_checkpointer_{timed,requested,done,slru_written}: checkpoints (and restartpoints) due by time and
    # requested, which count the ones skipped on an idle server too, those performed, and the SLRU buffers they
    # wrote. PostgreSQL 18 on (postgres_exporter's stat_checkpointer collector reads 17's columns only).
    "pgmon_checkpointer": versioned_query(
        {
            180000: """
            SELECT num_timed AS timed, num_requested AS requested, num_done AS done, slru_written
            FROM pg_stat_checkpointer
            """
        },
        ("timed", "COUNTER", "Checkpoints due by checkpoint_timeout, skipped ones included"),
        ("requested", "COUNTER", "Checkpoints requested, skipped ones included"),
        ("done", "COUNTER", "Checkpoints performed"),
        ("slru_written", "COUNTER", "SLRU buffers written by checkpoints"),
    ),
    # pgmon_parallel_workers_{to_launch,launched}{datname}: parallel workers queries planned, and got; fewer
    # launched means max_parallel_workers or max_worker_processes ran out. PostgreSQL 18 on.
    "pgmon_parallel_workers": versioned_query(
        {
            180000: """
            SELECT datname, parallel_workers_to_launch AS to_launch, parallel_workers_launched AS launched
            FROM pg_stat_database WHERE datname IS NOT NULL
            """
        },
        ("datname", "LABEL", "The database"),
        ("to_launch", "COUNTER", "Parallel workers planned"),
        ("launched", "COUNTER", "Parallel workers launched"),
    ),
    # pgmon_vacuum_progress_{running,delay_seconds}{datname}: VACUUMs running now, and the time they have
    # slept in cost-based delay (vacuum_cost_delay) so far. A row per database while one runs; PostgreSQL 18 on.
    "pgmon_vacuum_progress": versioned_query(
        {
            180000: """
            SELECT datname, count(*) AS running, sum(delay_time) / 1000 AS delay_seconds
            FROM pg_stat_progress_vacuum GROUP BY datname
            """
        },
        ("datname", "LABEL", "The database"),
        ("running", "GAUGE", "VACUUMs running"),
        ("delay_seconds", "GAUGE", "Time the running VACUUMs slept in cost-based delay"),
    ),
}
# Every exporter that keeps per-table series (table_metrics), about its own database's tables.
TABLE_QUERIES = {
    # pgmon_table_maintenance_{vacuum,autovacuum,analyze,autoanalyze}_seconds{schemaname, relname}: time spent
    # on each table by manual and automatic VACUUM and ANALYZE. PostgreSQL 18 on.
    "pgmon_table_maintenance": versioned_query(
        {
            180000: """
            SELECT schemaname, relname, total_vacuum_time / 1000 AS vacuum_seconds,
              total_autovacuum_time / 1000 AS autovacuum_seconds,
              total_analyze_time / 1000 AS analyze_seconds,
              total_autoanalyze_time / 1000 AS autoanalyze_seconds
            FROM pg_stat_user_tables
            """
        },
        ("schemaname", "LABEL", "Schema of the table"),
        ("relname", "LABEL", "The table"),
        ("vacuum_seconds", "COUNTER", "Time spent in manual VACUUM"),
        ("autovacuum_seconds", "COUNTER", "Time spent in autovacuum"),
        ("analyze_seconds", "COUNTER", "Time spent in manual ANALYZE"),
        ("autoanalyze_seconds", "COUNTER", "Time spent in autoanalyze"),
    ),
}


def render_exporter_queries(
    primary: bool, extra: dict[str, dict] | None = None, tables: bool = True
) -> bytes:
    """The queries.yaml of one exporter: DATABASE_QUERIES, TABLE_QUERIES where it keeps per-table series,
    SERVER_QUERIES in a server's first exporter, and ``extra`` (a discovered server's listing:
    render/discovery.py).

    (postgres_exporter 0.17 marks --extend.query-path deprecated; it is its only way to add a query.)
    """
    if extra:
        return yaml_bytes({**_exporter_queries(primary, tables), **extra})
    return _standard_exporter_queries(primary, tables)


def _exporter_queries(primary: bool, tables: bool) -> dict[str, dict]:
    return {
        **DATABASE_QUERIES,
        **(TABLE_QUERIES if tables else {}),
        **(SERVER_QUERIES if primary else {}),
    }


# Hundreds of listed databases share two or three of these files: written once, not once each (0.02 s apiece).
@functools.cache
def _standard_exporter_queries(primary: bool, tables: bool) -> bytes:
    return yaml_bytes(_exporter_queries(primary, tables))


def server_primaries(settings: Settings) -> set[str]:
    """Names of the databases whose exporter runs the server-wide collectors (first per server)."""
    primaries: dict[tuple[str, int], str] = {}
    for db in settings.databases:
        primaries.setdefault((db.host, db.port), db.name)
    return set(primaries.values())


# Under Prometheus's default scrape timeout (10s): a slow database gives up its collection, the scrape still
# answers. Fixed, so a changed scrape interval recreates no exporter.
COLLECTION_TIMEOUT = "9s"


def exporter_flags(
    primary: bool,
    statements: bool = False,
    tables: bool = True,
    version: tuple[int, int] = (0, 19),
    queries: str = EXPORTER_QUERIES,
) -> list[str]:
    """``statements``: the database has pg_stat_statements (whose view lists every database's statements).

    ``tables``: keep the per-table collectors; False drops the largest share of series for many-table databases.
    ``version``: postgres_exporter's (major, minor), from its image. ``queries``: its queries.yaml.
    """
    flags = [
        f"--web.listen-address=:{EXPORTER_PORT}",
        "--log.level=warn",
        f"--extend.query-path={queries}",
    ]
    if version >= (0, 19):
        flags.append(f"--collection-timeout={COLLECTION_TIMEOUT}")
    if not tables:
        flags += ["--no-collector.stat_user_tables", "--no-collector.statio_user_tables"]
    if statements:
        # Only where the extension is: elsewhere the query fails, and PostgreSQL logs it, at every scrape.
        flags.append("--collector.stat_statements")
    if primary:
        return flags + [f"--collector.{name}" for name in SERVER_WIDE_OPT_IN_COLLECTORS]
    flags.append("--disable-default-metrics")
    if version < (0, 20):  # its pg_settings metrics: the settings collector since 0.20
        flags.append("--disable-settings-metrics")
    return flags + [
        f"--no-collector.{name}"
        for name, (since, until) in SERVER_WIDE_COLLECTORS.items()
        if since <= version and (until is None or version < until)
    ]


def data_source_uri(db: Database) -> str:
    """host:port?sslmode=… for postgres_exporter; the database, user and password come from libpq's variables."""
    return f"{db.server}?sslmode={db.sslmode}"


def render_pgpass(password: str) -> bytes:
    """A libpq password file matching any server: ``*:*:*:*:<password>``, with ``\\`` and ``:`` escaped."""
    return ("*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n").encode()
