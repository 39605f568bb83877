"""pgmon's settings: one validated object built from host data and the environment.

Every pgmon setting is a host-data key starting with ``pgmon_`` (set in
``group_data/*.py``, the inventory, or ``--data``). Secrets are never settings:
a setting names the *environment variable* that holds the secret, and the
value is read from the controller's environment here, once.

Validation collects every problem and raises one ``DeployError`` that names
each field and how to fix it, before any operation touches the host.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Annotated, Literal, get_type_hints
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)
from pyinfra.api.exceptions import DeployError as PyinfraDeployError

SETTING_PREFIX = "pgmon_"

# The images the stack runs, on lines their upstream supports (README, "Versions": what the tests ran of each
# line). Prometheus 3.13 is the LTS line (to 2027-07-31); Alertmanager, supported in its newest minor only, reads Telegram chat ids from a file (0.31+);
# postgres_exporter stays on the 0.19 the tests ran, because 0.20 renames metrics the rules and dashboards read.
DEFAULT_IMAGES = {
    "prometheus": "prom/prometheus:v3.13.3",
    "alertmanager": "prom/alertmanager:v0.35.1",
    "postgres_exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.19.1",
    "node_exporter": "prom/node-exporter:v1.11.1",
    "grafana": "grafana/grafana:12.2.1",
}
# The oldest version of each that pgmon's files work with, where an image's tag says its version.
MINIMUM_VERSIONS = {
    "prometheus": (2, 55),  # the first that reads Prometheus 3's TSDB: a way back after an upgrade
    "alertmanager": (0, 31),  # telegram_configs.chat_id_file
    "postgres_exporter": (0, 17),
}
_VERSION_TAG_RE = re.compile(r":v?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?(?:$|[-+@])")


def image_version(image: str) -> tuple[int, int] | None:
    """(major, minor) from an image's tag (``prom/prometheus:v3.13.3`` -> (3, 13)); None if the tag does not say."""
    match = _VERSION_TAG_RE.search(image)
    return (int(match.group(1)), int(match.group(2))) if match else None


Component = Literal[tuple(DEFAULT_IMAGES)]  # the keys pgmon_images may override

DASHBOARD_9628_URL = "https://grafana.com/api/dashboards/9628/revisions/{revision}/download"


class DeployError(PyinfraDeployError):
    """A problem the user must fix; its message names the field and the fix.

    A pyinfra error, so the CLI prints the message without a traceback.
    """


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Prometheus's duration: units from the largest down, each at most once (30s1m and 5m5m are refused there).
_DURATION_RE = re.compile(
    r"^(?=[0-9])([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
)
MAX_DURATION_SECONDS = (
    100 * 365 * 86400
)  # Prometheus's limit is about 292 years (int64 nanoseconds)
# Set by pgmon on series or alerts: "datname" by the exporter, "severity" and "thresholds" by the rules.
RESERVED_LABELS = {
    "database",
    "server",
    "instance",
    "job",
    "datname",
    "alertname",
    "severity",
    "thresholds",
}
# Labels the exporters and Prometheus set on series pgmon's rules read: an extra label of the same name would
# be renamed exported_<name> by Prometheus, and a rule grouping by it would never fire.
SERIES_LABELS = {
    "alertstate",
    "application_name",
    "backend_type",
    "client_addr",
    "client_hostname",
    "collector",
    "cpu",
    "device",
    "fstype",
    "indexrelname",
    "le",
    "mode",
    "mountpoint",
    "name",
    "plugin",
    "queryid",
    "quantile",
    "relname",
    "rolname",
    "schemaname",
    "sequencename",
    "server_version",
    "short_version",
    "slot_name",
    "slot_type",
    "state",
    "sync_state",
    "usename",
    "user",
    "version",
    "wait_event",
    "wait_event_type",
}
# PromQL keywords: a label of that name in a rule's `by (...)` list makes the rules file invalid.
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
    "atan2",
    "limit",
    "smoothed",
    "anchored",
}


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-40 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit (it becomes a container name and a label)"
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_RE.fullmatch(value):
        # The value is not repeated: what stands here by mistake is often the secret itself.
        raise ValueError(
            "is not an environment variable name: give the NAME of the variable that holds the secret "
            "(letters, digits and '_', e.g. PGMON_SHOP_PASSWORD), not the secret itself"
        )
    return value


def _check_duration(value: str) -> str:
    if not _DURATION_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Prometheus duration: write e.g. '30s', '5m', '1h30m' "
            "(units from the largest, each once)"
        )
    if duration_seconds(value) > MAX_DURATION_SECONDS:
        raise ValueError(f"{value!r} is longer than 100 years")
    return value


def _check_positive_duration(value: str) -> str:
    if duration_seconds(value) <= 0:
        raise ValueError(f"{value!r} must be longer than 0s")
    return value


_DURATION_PART_RE = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(value: str) -> float:
    """Seconds in a Prometheus duration such as '1h30m'."""
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(value))


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key in labels:
        if not _LABEL_RE.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"label name {key!r} is invalid: use letters, digits and '_'")
        if key in RESERVED_LABELS:
            raise ValueError(f"label {key!r} is set by pgmon itself: choose another label name")
        if key in SERIES_LABELS:
            raise ValueError(
                f"label {key!r} is set by the exporters on the series the rules read; Prometheus "
                "would rename yours exported_" + key + ": choose another label name"
            )
        if key.lower() in PROMQL_KEYWORDS:
            raise ValueError(
                f"label {key!r} is a PromQL keyword and would break the rules: choose another name"
            )
    return labels


def _check_sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(
            f"{value!r} is not a sha256: write the 64 lowercase hex digits sha256sum prints"
        )
    return value


def _check_address(value: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address: write e.g. '0.0.0.0' or '127.0.0.1'"
        ) from None
    if address.version != 4 or str(address) != value:
        raise ValueError(
            f"{value!r}: write an IPv4 address as four plain numbers, e.g. '0.0.0.0' (all) or "
            "'127.0.0.1'; pgmon does not publish Grafana on IPv6 addresses"
        )
    return value


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$"
)


def _check_host(value: str) -> str:
    """A host name or IP address, nothing that could reach into the exporter's connection URI."""
    if "%" not in value:  # an IPv6 zone (fe80::1%eth0) cannot be written in the exporter's URI
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
    if not _HOSTNAME_RE.fullmatch(value) or re.fullmatch(
        r"[0-9.]+", value
    ):  # '059': a resolver takes it for a number
        raise ValueError(
            f"{value!r} is not a host name or IP address: write e.g. 'db1.internal', '10.0.0.5' "
            "or '::1' (no scheme, port, path or brackets; the port goes in 'port')"
        )
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{value!r} is not an http(s) URL: write e.g. 'https://api.telegram.org'")
    return value.rstrip("/")


def _check_dashboard_url(value: str) -> str:
    try:
        value.format(revision=1)
    except (KeyError, IndexError, ValueError):
        raise ValueError(
            "may hold {revision} and no other {...} placeholder (double a literal brace: {{ }})"
        ) from None
    _check_http_url(value.format(revision=1))
    return value


Name = Annotated[str, AfterValidator(_check_name)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Duration = Annotated[str, AfterValidator(_check_duration)]
Interval = Annotated[str, AfterValidator(_check_duration), AfterValidator(_check_positive_duration)]
Host = Annotated[str, AfterValidator(_check_host)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
Port = Annotated[int, Field(ge=1, le=65535)]
IPAddress = Annotated[str, AfterValidator(_check_address)]
Sha256 = Annotated[str, AfterValidator(_check_sha256)]
Percent = Annotated[float, Field(gt=0, le=100)]
Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
PerSecond = Annotated[float, Field(ge=0)]
Severity = Literal["critical", "warning"]


class _Strict(BaseModel):
    # Unknown keys are typos: refuse them instead of silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertThresholds(_Strict):
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
    # Transactions, tables, sequences, temporary files, size (database).
    rollback_percent: Percent = 10
    rollback_min_per_second: PerSecond = 1
    rollback_window: Duration = "10m"
    rollback_for: Duration = "10m"
    dead_tuples_percent: Percent = 20
    dead_tuples_min: Count = 10000
    dead_tuples_vacuum_age_seconds: Seconds = 86400
    dead_tuples_for: Duration = "30m"
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
    "temp_files_window",
    "database_growth_window",
    "database_size_window",
)
MIN_SCRAPES_PER_WINDOW = 4

# The same keys, each optional, plus PostgresDown/ExporterDown's `for` (globally pgmon_alert_timing's).
DatabaseAlertThresholds = create_model(
    "DatabaseAlertThresholds",
    __base__=_Strict,
    postgres_down_for=(Duration | None, None),
    **{
        name: (hint | None, None)
        for name, hint in get_type_hints(AlertThresholds, include_extras=True).items()
        if name not in HOST_THRESHOLDS
    },
)


class Database(_Strict):
    """One monitored database; ``name`` is pgmon's name for it in labels and containers."""

    name: Name
    host: Host
    port: Port = 5432
    dbname: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password_env: EnvName
    # lib/pq (used by postgres_exporter) knows these four modes, not 'prefer'.
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "require"
    labels: Labels = {}
    # The database has the pg_stat_statements extension: its exporter reads slow queries there, for
    # every database of the server (the view lists them all). One database per server is enough.
    pg_stat_statements: bool = False
    # Per-table series (about 28 a table, docs/benchmarks.md); False drops them for a database with many tables.
    table_metrics: bool = True
    # Overrides of pgmon_alert_thresholds for this database (server-wide keys: for its server).
    alert_thresholds: DatabaseAlertThresholds = DatabaseAlertThresholds()

    @property
    def server(self) -> str:
        """The PostgreSQL server as people write it: host:port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _check_severities(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(
            "list at least one severity ('critical', 'warning'), or remove the channel"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"{value!r} lists a severity twice")
    return value


Severities = Annotated[list[Severity], AfterValidator(_check_severities)]


class Discord(_Strict):
    webhook_url_env: EnvName = "PGMON_DISCORD_WEBHOOK_URL"
    severities: Severities = ["critical", "warning"]


class Telegram(_Strict):
    bot_token_env: EnvName = "PGMON_TELEGRAM_BOT_TOKEN"
    # The variable holds one chat id, or several separated by commas.
    chat_id_env: EnvName = "PGMON_TELEGRAM_CHAT_ID"
    severities: Severities = ["critical"]
    # Only tests and self-hosted Bot API servers change this.
    api_url: HttpUrl = "https://api.telegram.org"


class Watchdog(_Strict):
    """A dead man's switch: a URL that expects the always-firing Watchdog alert every ``interval``."""

    url_env: EnvName = "PGMON_WATCHDOG_URL"
    interval: Interval = "1m"


class Dashboard9628(_Strict):
    revision: int = Field(default=8, ge=1)
    # Where the controller downloads the JSON; {revision} is filled in.
    url: Annotated[str, AfterValidator(_check_dashboard_url)] = DASHBOARD_9628_URL
    # For air-gapped sites: a JSON file on the controller, used instead of url.
    file: str | None = None
    # The sha256 of the published JSON's bytes: any other content (download, cache or file) is refused.
    sha256: Sha256 | None = None


class AlertTiming(_Strict):
    postgres_down_for: Duration = "1m"
    group_wait: Duration = "30s"
    group_interval: Interval = "5m"
    repeat_interval: Interval = "4h"


# ---- pgmon_grafana_url and pgmon_silence (docs/alerts.md: "Dashboard links", "Maintenance silences")

# The address people open Grafana at, which every alert's link starts with: kept to characters that need no
# escaping in a URL, Discord's markdown or Telegram's HTML, and short enough for a link within their limits.
_GRAFANA_URL_RE = re.compile(r"^https?://[A-Za-z0-9._~:/%-]+$")
GRAFANA_URL_MAX = 150


def _check_grafana_url(value: str) -> str:
    parts = urlsplit(value)
    if not _GRAFANA_URL_RE.fullmatch(value) or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{value!r} is not the http(s) address of Grafana as people open it: write e.g. "
            "'https://grafana.example.com' or 'https://example.com/grafana' (letters, digits and "
            ". _ ~ : / % - only; no query or fragment)"
        )
    if len(value) > GRAFANA_URL_MAX:
        raise ValueError(
            f"is longer than {GRAFANA_URL_MAX} characters; the links it starts must fit in a message"
        )
    return value.rstrip("/")


GrafanaUrl = Annotated[str, AfterValidator(_check_grafana_url)]
SILENCE_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SILENCE_MAX_SECONDS = 30 * 86400
SILENCE_REASON_MAX = 300


def _check_silence_for(value: str) -> str:
    if duration_seconds(value) > SILENCE_MAX_SECONDS:
        raise ValueError(
            f"{value!r} is longer than 30d; silence again when it ends, so a forgotten silence "
            "cannot hide a database for good"
        )
    return value


def _check_reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(
            "say why (it is shown with the silence to whoever looks at it), e.g. "
            "'VACUUM FULL of orders, ticket OPS-123'"
        )
    if len(value) > SILENCE_REASON_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"write one line of at most {SILENCE_REASON_MAX} characters")
    return value


def _check_silence_id(value: str) -> str:
    if not SILENCE_ID_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a silence id: give the id silence.py lists (e.g. "
            "'0a1b2c3d-0000-4000-8000-123456789abc')"
        )
    return value


class Silence(_Strict):
    """``--data pgmon_silence='{...}'`` for silence.py: silence one database, or one server, for a while with a
    reason; or end a silence early by its id. Without it, silence.py lists the active silences."""

    database: Name | None = None
    server: str | None = None  # host:port, as alerts and `database X on host:port` name it
    for_: Annotated[Interval, AfterValidator(_check_silence_for)] | None = Field(
        default=None, alias="for"
    )
    reason: Annotated[str, AfterValidator(_check_reason)] | None = None
    end: Annotated[str, AfterValidator(_check_silence_id)] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Silence:
        if self.end is not None:
            if any(
                value is not None for value in (self.database, self.server, self.for_, self.reason)
            ):
                raise ValueError("end ends a silence by its id and takes no other key")
            return self
        problems = []
        if (self.database is None) == (self.server is None):
            problems.append(
                "give either database (pgmon's name for it) or server (host:port) to silence, "
                "or end (a silence id) to end one"
            )
        if self.for_ is None:
            problems.append(
                'say for how long, e.g. "for": "2h" (a Prometheus duration, at most 30d)'
            )
        if self.reason is None:
            problems.append('say why, e.g. "reason": "VACUUM FULL of orders"')
        if problems:
            raise ValueError("; ".join(problems))
        return self


class GrafanaCertificate(_Strict):
    """pgmon_grafana_certificate: the certificate Grafana serves, as PEM files on the controller (README, "HTTPS")."""

    cert_file: str = Field(min_length=1)  # the server's certificate first, then its chain
    key_file: str = Field(min_length=1)  # unencrypted; written to the host readable by Grafana only


# Directories of the system or of its users: pgmon owns, hashes and prunes what is under base_dir.
SYSTEM_DIRS = {
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/usr/local",
}
SYSTEM_TREES = (
    "/bin/",
    "/boot/",
    "/dev/",
    "/etc/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/proc/",
    "/run/",
    "/sbin/",
    "/sys/",
    "/usr/",
)


def _base_dir_problems(path: str) -> list[str]:
    if not path.startswith("/"):
        return [f"{path!r} must be an absolute path such as /opt/pgmon"]
    normal = posixpath.normpath(path)
    if normal != path.rstrip("/") or "//" in path:
        return [
            f"{path!r} is not written plainly (it means {normal!r}); write {normal!r} if that is meant"
        ]
    if not re.fullmatch(r"[A-Za-z0-9/._+-]+", path):
        return [f"{path!r}: use letters, digits and / . _ + - only"]
    if normal in SYSTEM_DIRS or normal.startswith(SYSTEM_TREES):
        return [
            f"{path!r} is a directory of the system; pgmon owns and prunes its base_dir: use a folder of its "
            "own such as /opt/pgmon or /srv/pgmon"
        ]
    return []


class SettingsInput(_Strict):
    """What group_data may say, without the ``pgmon_`` prefix. Defaults documented in README."""

    databases: list[Database] = []
    base_dir: str = "/opt/pgmon"
    project: Name = "pgmon"
    scrape_interval_seconds: int = Field(default=15, ge=1, le=300)
    evaluation_interval_seconds: int = Field(default=15, ge=1, le=300)
    prometheus_port: Port = 9090
    alertmanager_port: Port = 9093
    grafana_bind_address: IPAddress = "0.0.0.0"
    grafana_port: Port = 3000
    grafana_admin_user: str = Field(default="admin", min_length=1)
    grafana_admin_password_env: EnvName = "PGMON_GRAFANA_ADMIN_PASSWORD"
    discord: Discord | None = None
    telegram: Telegram | None = None
    watchdog: Watchdog | None = None
    alert_timing: AlertTiming = AlertTiming()
    alert_thresholds: AlertThresholds = AlertThresholds()
    dashboard_9628: Dashboard9628 = Dashboard9628()
    # "auto": the distribution's packages where they include Compose v2 (Debian 13+, Ubuntu 24.04+), Docker's apt
    # repository elsewhere (tasks/docker_engine.py).
    docker_install: Literal["auto", "docker-repo", "distro"] = "auto"
    images: dict[Component, str] = {}
    verify_timeout_seconds: int = Field(default=180, ge=5, le=3600)
    # End the shell of a run that holds the host's lock and hung (its connection never closed): tasks/host_lock.py.
    take_over_lock: bool = False
    # HTTPS for Grafana (tasks/grafana_tls.py): a self-signed certificate made on the host unless grafana_certificate
    # names the user's own; False serves plain HTTP.
    grafana_https: bool = True
    grafana_certificate: GrafanaCertificate | None = None
    # uninstall.py: also delete the data volumes (Prometheus's history, Grafana's and Alertmanager's data).
    uninstall_delete_data: bool = False
    # backup.py writes its archive into this folder on the controller; restore.py reads the archive named here.
    backup_dir: str = Field(default="pgmon-backups", min_length=1)
    restore_from: str | None = None
    # Where people open Grafana: every alert then links to dashboard 9628 on its server and database.
    grafana_url: GrafanaUrl | None = None
    # silence.py's request (docs/alerts.md, "Maintenance silences"); the deploy ignores it.
    silence: Silence | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SettingsInput:
        problems = []
        problems += [f"base_dir: {problem}" for problem in _base_dir_problems(self.base_dir)]
        names = [db.name for db in self.databases]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                f"databases: the name {dup!r} is used twice; each database needs its own name"
            )
        targets = [(db.host, db.port, db.dbname) for db in self.databases]
        for host, port, dbname in sorted({t for t in targets if targets.count(t) > 1}):
            problems.append(
                f"databases: {dbname!r} on {host}:{port} is listed twice; list each database once"
            )
        ports = {
            "prometheus_port": self.prometheus_port,
            "alertmanager_port": self.alertmanager_port,
        }
        if self.grafana_bind_address in ("0.0.0.0", "127.0.0.1"):
            ports["grafana_port"] = self.grafana_port
        seen: dict[int, str] = {}
        for field, port in ports.items():
            if port in seen:
                problems.append(
                    f"{field}: port {port} is already used by {seen[port]}; pick another"
                )
            seen.setdefault(port, field)
        problems += self._threshold_problems()
        if self.grafana_certificate is not None and not self.grafana_https:
            problems.append(
                "grafana_certificate: is set while pgmon_grafana_https is False; remove one of them"
            )
        for component, image in self.images.items():
            version, minimum = image_version(image), MINIMUM_VERSIONS.get(component)
            if version and minimum and version < minimum:
                problems.append(
                    f"images.{component}: {image!r} is older than pgmon supports "
                    f"({'.'.join(map(str, minimum))} or later; the default is {DEFAULT_IMAGES[component]!r})"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _threshold_problems(self) -> list[str]:
        problems = []
        shortest = MIN_SCRAPES_PER_WINDOW * self.scrape_interval_seconds
        sources = [("alert_thresholds", self.alert_thresholds)] + [
            (f"databases[{index}].alert_thresholds", db.alert_thresholds)
            for index, db in enumerate(self.databases)
        ]
        for where, thresholds in sources:
            for key in WINDOW_THRESHOLDS:
                value = getattr(thresholds, key)
                if value is not None and duration_seconds(value) < shortest:
                    problems.append(
                        f"{where}.{key}: {value!r} holds fewer than {MIN_SCRAPES_PER_WINDOW} scrapes "
                        f"({self.scrape_interval_seconds}s apart); make it at least {shortest}s"
                    )
        statements: dict[str, Database] = {}
        for index, db in enumerate(self.databases):
            other = statements.setdefault(db.server, db) if db.pg_stat_statements else db
            if other is not db:
                problems.append(
                    f"databases[{index}].pg_stat_statements: {other.name} on the same server {db.server} already "
                    "reads pg_stat_statements, which lists the statements of every database there; set it once"
                )
        first_setting: dict[tuple[str, str], tuple[Database, object]] = {}
        for index, db in enumerate(self.databases):
            for key, value in db.alert_thresholds.model_dump(
                include=SERVER_THRESHOLDS, exclude_none=True
            ).items():
                other, other_value = first_setting.setdefault((db.server, key), (db, value))
                if other_value != value:
                    problems.append(
                        f"databases[{index}].alert_thresholds.{key}: {db.name} shares {db.server} with "
                        f"{other.name}, which sets {other_value!r}; {key} judges the whole server, so give "
                        "the same value or set it on one of them only"
                    )
        return problems

    @model_validator(mode="after")
    def _silence_target(self) -> SettingsInput:
        """A silence names a configured database or server, as alerts carry them."""
        silence = self.silence
        if silence is None or silence.end is not None:
            return self
        if silence.database is not None and silence.database not in [
            db.name for db in self.databases
        ]:
            known = [db.name for db in self.databases]
            close = difflib.get_close_matches(silence.database, known, n=1)
            raise ValueError(
                f"silence.database: {silence.database!r} is not a configured database"
                + (f"; did you mean {close[0]!r}?" if close else f" ({', '.join(known) or 'none'})")
            )
        servers = list(dict.fromkeys(db.server for db in self.databases))
        if silence.server is not None and silence.server not in servers:
            raise ValueError(
                f"silence.server: {silence.server!r} is not the server (host:port) of a configured "
                f"database: {', '.join(servers) or 'none'}"
            )
        return self

    def thresholds_for(self, db: Database) -> AlertThresholds:
        """The global thresholds with ``db``'s overrides, and those of other databases on its server for
        server-wide keys."""
        overrides = {}
        for other in self.databases:
            if other.server == db.server:
                overrides.update(
                    other.alert_thresholds.model_dump(include=SERVER_THRESHOLDS, exclude_none=True)
                )
        overrides.update(
            db.alert_thresholds.model_dump(exclude={"postgres_down_for"}, exclude_none=True)
        )
        return self.alert_thresholds.model_copy(update=overrides)

    def postgres_down_for(self, db: Database) -> str:
        return db.alert_thresholds.postgres_down_for or self.alert_timing.postgres_down_for


class DatabaseSecrets(BaseModel):
    model_config = ConfigDict(frozen=True)
    password: SecretStr


class Settings(BaseModel):
    """The validated settings plus the secrets read from the controller's environment."""

    model_config = ConfigDict(frozen=True)

    config: SettingsInput
    database_passwords: dict[str, SecretStr]
    grafana_admin_password: SecretStr
    discord_webhook_url: SecretStr | None
    telegram_bot_token: SecretStr | None
    telegram_chat_ids: tuple[int, ...]
    watchdog_url: SecretStr | None
    # pgmon_grafana_certificate's PEM certificate (chain) and key, read on the controller (tasks/grafana_tls.py).
    grafana_tls_certificate: bytes | None = None
    grafana_tls_key: SecretStr | None = None

    @property
    def databases(self) -> list[Database]:
        return self.config.databases

    def image(self, component: Component) -> str:
        return self.config.images.get(component, DEFAULT_IMAGES[component])

    def version(self, component: Component) -> tuple[int, int]:
        """The component's version, from its image's tag; a tag that does not say (a digest, a mirror's own
        naming) counts as the default's."""
        return image_version(self.image(component)) or image_version(DEFAULT_IMAGES[component])


def _format_validation_error(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        path = SETTING_PREFIX + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        if item["type"] == "extra_forbidden" and "alert_thresholds" in item["loc"]:
            lines.append(f"{path}: {_unknown_threshold_hint(item['loc'])}")
        elif item["type"] == "extra_forbidden":
            lines.append(
                f"{path}: unknown key; remove it or fix its spelling (see README, Configuration)"
            )
        elif not item["loc"]:  # the whole-model checks: one line per problem, each naming its field
            lines += [
                SETTING_PREFIX + line
                for line in item["msg"].removeprefix("Value error, ").splitlines()
            ]
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}")
    return lines


def _unknown_threshold_hint(loc: tuple) -> str:
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


def _unknown_setting_lines(keys: list[str]) -> list[str]:
    known = [SETTING_PREFIX + name for name in SettingsInput.model_fields]
    lines = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see README, Configuration"
        lines.append(f"{key}: unknown pgmon setting{hint}")
    return lines


def build_settings(
    host_data: Mapping[str, object], environ: Mapping[str, str] = os.environ
) -> Settings:
    """Validate pgmon's host data and read the secrets it names from ``environ``.

    Example:

    .. code:: python

        settings = build_settings({"pgmon_databases": [...], "pgmon_discord": {}}, os.environ)
    """
    raw = {
        k[len(SETTING_PREFIX) :]: v for k, v in host_data.items() if k.startswith(SETTING_PREFIX)
    }
    known = set(SettingsInput.model_fields)
    problems = _unknown_setting_lines(sorted(SETTING_PREFIX + k for k in raw if k not in known))
    try:
        config = SettingsInput(**{k: v for k, v in raw.items() if k in known})
    except ValidationError as error:
        problems += _format_validation_error(error)
        raise DeployError(_problem_report(problems)) from None
    if problems:
        raise DeployError(_problem_report(problems))

    if not config.databases:
        problems.append(
            "pgmon_databases: no database is configured; add one entry per database in "
            "group_data/all.py (name, host, port, dbname, user, password_env)"
        )
    if config.discord is None and config.telegram is None:
        problems.append(
            "pgmon_discord / pgmon_telegram: no alert channel is configured; set at least one "
            "in group_data/all.py, e.g. pgmon_discord = {} (webhook URL read from "
            "PGMON_DISCORD_WEBHOOK_URL)"
        )

    def secret(field: str, env_name: str) -> SecretStr | None:
        value = environ.get(env_name)
        if not value:
            problems.append(
                f"{field}: the environment variable {env_name} is not set; export it before running pyinfra"
            )
            return None
        return SecretStr(value)

    def checked(field: str, env_name: str, problem) -> SecretStr | None:
        """The secret, if ``problem(value)`` finds nothing wrong; the problem is said without the value."""
        value = secret(field, env_name)
        if value is None:
            return None
        wrong = problem(value.get_secret_value())
        if wrong:
            problems.append(f"{field}: the value of {env_name} {wrong}")
            return None
        return value

    passwords = {}
    for index, db in enumerate(config.databases):
        # Written to a pgpass line: anything but a line break works (PGPASSFILE; never in a DSN or a log).
        value = checked(
            f"pgmon_databases[{index}].password_env ({db.name})",
            db.password_env,
            lambda v: (
                "holds a line break; give this monitoring user a password without one"
                if "\n" in v or "\r" in v
                else None
            ),
        )
        if value is not None:
            passwords[db.name] = value
    grafana_password = checked(
        "pgmon_grafana_admin_password_env",
        config.grafana_admin_password_env,
        lambda v: (
            "is 'admin'; choose a real password"
            if v == "admin"
            else "starts or ends with white space or holds a line break, which Grafana drops from the password file; "
            "choose another"
            if v != v.strip() or "\n" in v or "\r" in v
            else None
        ),
    )
    webhook = None
    if config.discord:
        webhook = checked(
            "pgmon_discord.webhook_url_env", config.discord.webhook_url_env, _url_problem
        )
    token, chat_ids = None, ()
    if config.telegram:
        token = checked(
            "pgmon_telegram.bot_token_env",
            config.telegram.bot_token_env,
            lambda v: (
                None
                if re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]+", v)
                else "is not a bot token as @BotFather gives it (digits, ':', then letters, digits, '_' or '-')"
            ),
        )
        chats = checked(
            "pgmon_telegram.chat_id_env", config.telegram.chat_id_env, _chat_ids_problem
        )
        if chats is not None:
            chat_ids = tuple(
                dict.fromkeys(int(chat.strip(" ")) for chat in chats.get_secret_value().split(","))
            )
    watchdog = (
        checked("pgmon_watchdog.url_env", config.watchdog.url_env, _url_problem)
        if config.watchdog
        else None
    )
    tls_certificate = tls_key = None
    if config.grafana_certificate is not None:
        from .grafana_tls import read_certificate

        tls_certificate, key, tls_problems = read_certificate(
            config.grafana_certificate.cert_file, config.grafana_certificate.key_file
        )
        problems += tls_problems
        tls_key = None if key is None else SecretStr(key.decode("ascii", errors="replace"))
    if problems:
        raise DeployError(_problem_report(problems))
    return Settings(
        config=config,
        database_passwords=passwords,
        grafana_admin_password=grafana_password,
        discord_webhook_url=webhook,
        telegram_bot_token=token,
        telegram_chat_ids=chat_ids,
        watchdog_url=watchdog,
        grafana_tls_certificate=tls_certificate,
        grafana_tls_key=tls_key,
    )


def _url_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        return "is not an http(s) URL without spaces (e.g. https://discord.com/api/webhooks/...)"
    return None


_CHAT_ID_RE = re.compile(
    r"-?[1-9][0-9]{0,15}"
)  # ASCII digits only: int() would also read '١٢٣' as 123


def _chat_ids_problem(value: str) -> str | None:
    if all(_CHAT_ID_RE.fullmatch(chat.strip(" ")) for chat in value.split(",")):
        return None
    return (
        "must hold a Telegram chat id (e.g. -1001234567890: an optional '-', then up to 16 digits, not 0), "
        "or several separated by commas"
    )


def _problem_report(problems: list[str]) -> str:
    return "pgmon cannot deploy; nothing on the host was changed. Fix:\n" + "\n".join(
        f"  - {p}" for p in problems
    )
