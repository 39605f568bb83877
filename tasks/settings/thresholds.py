"""The alert rules' thresholds: every key with its default (``pgmon_alert_thresholds``), the same keys as
a database's overrides, and which keys judge a server, the processing host, or a window of scrapes."""

from __future__ import annotations

import difflib
from typing import Annotated, get_type_hints

from pydantic import Field, create_model

from .fields import Count, Duration, Percent, PerSecond, Seconds, Strict


class AlertThresholds(Strict):
    """Every alert rule's threshold and ``for`` duration; ``pgmon_alert_thresholds`` overrides them.

    docs/alerts.md documents each key. Percentages are 0-100; "_window" keys are
    the range a rate or change is measured over.
    """

    exporter_errors_for: Duration = "5m"
    connections_percent: Percent = 80
    connections_for: Duration = "5m"
    deadlocks_window: Duration = "10m"
    lock_waiters: Count = 1
    lock_waiters_for: Duration = "2m"
    replication_lag_seconds: Seconds = 300
    replication_lag_for: Duration = "5m"
    long_transaction_seconds: Seconds = 1800
    long_transaction_for: Duration = "1m"
    idle_in_transaction_seconds: Seconds = 300
    idle_in_transaction_for: Duration = "1m"
    slow_query_mean_seconds: Seconds = 1
    slow_query_window: Duration = "10m"
    slow_query_for: Duration = "5m"
    cache_hit_percent: Percent = 90
    cache_hit_min_blocks_per_second: PerSecond = 100
    cache_hit_window: Duration = "10m"
    cache_hit_for: Duration = "15m"
    wraparound_percent: Percent = 50
    wraparound_for: Duration = "5m"
    restart_window: Duration = "15m"
    # Replication and WAL (server).
    replication_slot_inactive_for: Duration = "30m"
    replication_slot_wal_gib: Annotated[float, Field(gt=0)] = 10
    replication_slot_wal_for: Duration = "5m"
    archive_failing_window: Duration = "10m"
    archive_failing_for: Duration = "5m"
    role_change_window: Duration = "15m"
    replica_not_streaming_for: Duration = "5m"
    role_connections_percent: Percent = 80
    role_connections_for: Duration = "5m"
    checkpoints_requested_percent: Percent = 50
    checkpoints_window: Duration = "1h"
    checkpoints_for: Duration = "15m"
    checksum_failures: Count = 1
    pending_restart_for: Duration = "30m"
    # Parallel workers planned but not launched (database; PostgreSQL 18 counts them).
    parallel_workers_missed_percent: Percent = 50
    parallel_workers_min: Count = 10
    parallel_workers_window: Duration = "30m"
    parallel_workers_for: Duration = "15m"
    # Transactions, tables, sequences, temporary files, size (database).
    rollback_percent: Percent = 10
    rollback_min_per_second: PerSecond = 1
    rollback_window: Duration = "10m"
    rollback_for: Duration = "10m"
    dead_tuples_percent: Percent = 20
    dead_tuples_min: Count = 10000
    dead_tuples_vacuum_age_seconds: Seconds = 86400
    dead_tuples_for: Duration = "30m"
    # Autovacuum spent time on a table whose dead rows did not fall (PostgreSQL 18 times it).
    autovacuum_ineffective_window: Duration = "1h"
    autovacuum_ineffective_for: Duration = "30m"
    analyze_age_seconds: Seconds = 604800
    analyze_min_rows: Count = 1000
    analyze_for: Duration = "30m"
    sequence_used_percent: Percent = 75
    temp_files_gib: Annotated[float, Field(gt=0)] = 1
    temp_files_window: Duration = "10m"
    database_growth_gib: Annotated[float, Field(gt=0)] = 1
    database_growth_window: Duration = "1h"
    database_size_limit_gib: Annotated[float, Field(gt=0)] = 100
    database_size_window: Duration = "6h"
    database_size_horizon: Duration = "1d"
    database_size_for: Duration = "30m"
    # Days-left forecasts (server): deriv() over the window, warning and critical horizons.
    forecast_warning_days: Annotated[float, Field(gt=0)] = 14
    forecast_critical_days: Annotated[float, Field(gt=0)] = 3
    forecast_window: Duration = "6h"
    forecast_for: Duration = "30m"
    # Connections fitted over weeks: neither a morning's rise nor a week's is a trend.
    connections_forecast_window: Duration = "21d"
    # The volume that holds the server's data directory (GiB); unset, DataVolumeRunsOut is not rendered.
    data_volume_gib: Annotated[float, Field(gt=0)] | None = None
    # Series a database brings per scrape (Prometheus's scrape_samples_post_metric_relabeling).
    series_budget: Count = 5000
    series_budget_for: Duration = "15m"
    host_cpu_percent: Percent = 90
    host_cpu_for: Duration = "15m"
    host_memory_available_percent: Percent = 10
    host_memory_for: Duration = "10m"
    host_disk_free_percent: Percent = 10
    host_disk_for: Duration = "10m"


# Keys of rules that judge a whole PostgreSQL server: a database's override applies to its server.
SERVER_THRESHOLDS = frozenset(
    {
        "connections_percent",
        "connections_for",
        "replication_lag_seconds",
        "replication_lag_for",
        "wraparound_percent",
        "wraparound_for",
        "restart_window",
        "replication_slot_inactive_for",
        "replication_slot_wal_gib",
        "replication_slot_wal_for",
        "archive_failing_window",
        "archive_failing_for",
        "role_change_window",
        "replica_not_streaming_for",
        "role_connections_percent",
        "role_connections_for",
        "checkpoints_requested_percent",
        "checkpoints_window",
        "checkpoints_for",
        "checksum_failures",
        "pending_restart_for",
        "forecast_warning_days",
        "forecast_critical_days",
        "forecast_window",
        "forecast_for",
        "connections_forecast_window",
        "data_volume_gib",
    }
)
# Keys of the processing host's rules: global only.
HOST_THRESHOLDS = frozenset(
    name for name in AlertThresholds.model_fields if name.startswith("host_")
)
# Ranges that rate(), increase() and changes() need several scrapes in.
WINDOW_THRESHOLDS = (
    "deadlocks_window",
    "slow_query_window",
    "cache_hit_window",
    "restart_window",
    "archive_failing_window",
    "role_change_window",
    "checkpoints_window",
    "rollback_window",
    "parallel_workers_window",
    "autovacuum_ineffective_window",
    "temp_files_window",
    "database_growth_window",
    "database_size_window",
    "forecast_window",
    "connections_forecast_window",
)
MIN_SCRAPES_PER_WINDOW = 4
# A forecast fits a line through its window: through less than an hour it follows every bump.
FORECAST_WINDOW_MIN_SECONDS = 3600
# How long Prometheus keeps its samples (compose.py): a longer forecast window would never be on record.
PROMETHEUS_RETENTION_DAYS = 30
# ConnectionsRunOut fits hourly points (a subquery over the recorded ratio): a day gives it 24.
CONNECTIONS_FORECAST_WINDOW_SECONDS = (86400, PROMETHEUS_RETENTION_DAYS * 86400)

# The same keys, each optional, plus PostgresDown/ExporterDown's `for` (globally pgmon_alert_timing's).
DatabaseAlertThresholds = create_model(
    "DatabaseAlertThresholds",
    __base__=Strict,
    postgres_down_for=(Duration | None, None),
    **{
        name: (hint | None, None)
        for name, hint in get_type_hints(AlertThresholds, include_extras=True).items()
        if name not in HOST_THRESHOLDS
    },
)


def unknown_threshold_hint(loc: tuple) -> str:
    """What to say of an unknown key at ``loc`` in pgmon_alert_thresholds or a database's alert_thresholds."""
    key, per_database = loc[-1], loc[0] == "databases"
    if per_database and key in HOST_THRESHOLDS:
        return "is about the processing host, not a database; set it in pgmon_alert_thresholds"
    if not per_database and key == "postgres_down_for":
        return (
            "set it as pgmon_alert_timing.postgres_down_for (or per database, in the entry's "
            "alert_thresholds)"
        )
    known = (DatabaseAlertThresholds if per_database else AlertThresholds).model_fields
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean {close[0]}?" if close else "the keys are listed in docs/alerts.md"
    return f"unknown alert threshold; {hint}"
