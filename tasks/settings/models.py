"""The deploy's settings: what group_data says about the databases, the alert channels and the stack,
without the ``pgmon_`` prefix, and the checks that need more than one value (docs/configuration.md).

The options of single commands (silence, uninstall, backup, restore, the lock's take-over) are not
here: run_options.py holds them, and load.py's SettingsInput validates both together.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .cluster import Cluster, flush_step_ms, peer_timeout_problem
from .discovery import DiscoveredServer
from .fields import (
    DEFAULT_RUNBOOK_BASE_URL,
    DownloadUrl,
    Duration,
    EnvName,
    ExternalLabels,
    GrafanaUrl,
    Host,
    HttpUrl,
    Interval,
    IPAddress,
    Labels,
    Name,
    Port,
    RunbookBaseUrl,
    Severities,
    Sha256,
    Strict,
    duration_seconds,
    server_address,
)
from .images import Component, too_old_images
from .remote_write import RemoteWrite
from .thresholds import (
    CONNECTIONS_FORECAST_WINDOW_SECONDS,
    FORECAST_WINDOW_MIN_SECONDS,
    MIN_SCRAPES_PER_WINDOW,
    SERVER_THRESHOLDS,
    WINDOW_THRESHOLDS,
    AlertThresholds,
    DatabaseAlertThresholds,
)

DASHBOARD_9628_URL = "https://grafana.com/api/dashboards/9628/revisions/{revision}/download"


class Database(Strict):
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
    # Per-table series (about 29 a table, docs/benchmarks.md); False drops them for a database with many tables.
    table_metrics: bool = True
    # Overrides of pgmon_alert_thresholds for this database (server-wide keys: for its server).
    alert_thresholds: DatabaseAlertThresholds = DatabaseAlertThresholds()

    @property
    def server(self) -> str:
        return server_address(self.host, self.port)


class Discord(Strict):
    webhook_url_env: EnvName = "PGMON_DISCORD_WEBHOOK_URL"
    severities: Severities = ["critical", "warning"]


class Telegram(Strict):
    bot_token_env: EnvName = "PGMON_TELEGRAM_BOT_TOKEN"
    # The variable holds one chat id, or several separated by commas.
    chat_id_env: EnvName = "PGMON_TELEGRAM_CHAT_ID"
    severities: Severities = ["critical"]
    # Only tests and self-hosted Bot API servers change this.
    api_url: HttpUrl = "https://api.telegram.org"


class Watchdog(Strict):
    """A dead man's switch: a URL that expects the always-firing Watchdog alert every ``interval``."""

    url_env: EnvName = "PGMON_WATCHDOG_URL"
    interval: Interval = "1m"


class Dashboard9628(Strict):
    revision: int = Field(default=8, ge=1)
    # Where the controller downloads the JSON; {revision} is filled in.
    url: DownloadUrl = DASHBOARD_9628_URL
    # For air-gapped sites: a JSON file on the controller, used instead of url.
    file: str | None = None
    # The sha256 of the published JSON's bytes: any other content (download, cache or file) is refused.
    sha256: Sha256 | None = None


class AlertTiming(Strict):
    postgres_down_for: Duration = "1m"
    group_wait: Duration = "30s"
    group_interval: Interval = "5m"
    repeat_interval: Interval = "4h"


class GrafanaCertificate(Strict):
    """pgmon_grafana_certificate: the certificate Grafana serves, as PEM files on the controller (docs/security.md, "HTTPS for Grafana")."""

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


class DeploySettings(Strict):
    """What group_data may say about the deployed stack, without the ``pgmon_`` prefix. Defaults
    documented in README."""

    databases: list[Database] = []
    # Servers whose databases pgmon finds by itself (discovery.py, docs/many-databases.md).
    servers: list[DiscoveredServer] = []
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
    # The key Grafana encrypts what it stores with (tasks/grafana_key.py); None: Grafana's public default, only for
    # a Grafana whose data was made with it.
    grafana_secret_key_env: EnvName | None = "PGMON_GRAFANA_SECRET_KEY"
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
    # HTTPS for Grafana (tasks/grafana_tls.py): a self-signed certificate made on the host unless grafana_certificate
    # names the user's own; False serves plain HTTP.
    grafana_https: bool = True
    grafana_certificate: GrafanaCertificate | None = None
    # Where people open Grafana: every alert then links to dashboard 9628 on its server and database.
    grafana_url: GrafanaUrl | None = None
    # The page every alert's runbook_url starts with (docs/runbooks.md), each rule adding its own #anchor.
    runbook_base_url: RunbookBaseUrl = DEFAULT_RUNBOOK_BASE_URL
    # Stores Prometheus copies every sample to (remote_write.py, docs/storage.md).
    remote_write: list[RemoteWrite] = []
    # Labels this Prometheus adds to what leaves it, samples sent to a store and alerts: what tells processing
    # hosts apart where they meet (a shared store), e.g. {"site": "eu-1"}.
    external_labels: ExternalLabels = {}
    # An HA group of processing hosts (cluster.py, docs/cluster.md); cluster_address is one host's own address
    # for the others, in that host's data.
    cluster: Cluster | None = None
    cluster_address: IPAddress | None = None

    @field_validator("base_dir")
    @classmethod
    def _one_spelling(cls, value: str) -> str:
        # /opt/pgmon/ is /opt/pgmon: one spelling wherever it is used (the compose file's paths, the lock).
        return value.rstrip("/") or value

    @property
    def flush_step_ms(self) -> int:
        return flush_step_ms(
            self.evaluation_interval_seconds,
            self.alert_timing.group_wait,
            self.alert_timing.group_interval,
        )

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        problems = []
        problems += [f"base_dir: {problem}" for problem in _base_dir_problems(self.base_dir)]
        names = [db.name for db in self.databases] + [server.name for server in self.servers]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                f"databases / servers: the name {dup!r} is used twice; each database and server needs "
                "its own name"
            )
        addresses = [server.server for server in self.servers]
        for dup in sorted({a for a in addresses if addresses.count(a) > 1}):
            problems.append(
                f"servers: {dup} is listed twice; one entry per server (several include patterns "
                "go in one entry)"
            )
        stores = [store.name for store in self.remote_write]
        for dup in sorted({n for n in stores if stores.count(n) > 1}):
            problems.append(
                f"remote_write: the name {dup!r} is used twice; give each store its own name"
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
        if self.cluster is not None:
            ports["cluster.gossip_port"] = self.cluster.gossip_port
            problem = peer_timeout_problem(self.cluster, self.flush_step_ms)
            problems += [problem] if problem else []
        seen: dict[int, str] = {}
        for field, port in ports.items():
            if port in seen:
                problems.append(
                    f"{field}: port {port} is already used by {seen[port]}; pick another"
                )
            seen.setdefault(port, field)
        for index, server in enumerate(self.servers):
            interval = server.scrape_interval_seconds
            if interval is not None and interval < self.scrape_interval_seconds:
                problems.append(
                    f"servers[{index}].scrape_interval_seconds: {interval} is shorter than "
                    f"pgmon_scrape_interval_seconds ({self.scrape_interval_seconds}), the scrape timeout "
                    "Prometheus gives every target; leave it out, or make it at least that"
                )
        problems += self._threshold_problems()
        if self.grafana_certificate is not None and not self.grafana_https:
            problems.append(
                "grafana_certificate: is set while pgmon_grafana_https is False; remove one of them"
            )
        problems += too_old_images(self.images)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _threshold_problems(self) -> list[str]:
        problems = []
        # The longest interval any database is scraped at: a window must hold enough of its scrapes too.
        longest = max(
            [self.scrape_interval_seconds]
            + [s.scrape_interval_seconds for s in self.servers if s.scrape_interval_seconds]
        )
        shortest = MIN_SCRAPES_PER_WINDOW * longest
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
                        f"({longest}s apart); make it at least {shortest}s"
                    )
        shortest_connections, longest_connections = CONNECTIONS_FORECAST_WINDOW_SECONDS
        for where, thresholds in sources:
            window = thresholds.forecast_window
            if window is not None and duration_seconds(window) < FORECAST_WINDOW_MIN_SECONDS:
                problems.append(
                    f"{where}.forecast_window: {window!r} is too short for a forecast (a line through a few "
                    "minutes follows every bump); make it at least 1h"
                )
            window = thresholds.connections_forecast_window
            if window is not None and not (
                shortest_connections <= duration_seconds(window) <= longest_connections
            ):
                problems.append(
                    f"{where}.connections_forecast_window: {window!r} is outside 1d to "
                    f"{longest_connections // 86400}d: its line goes through hourly points, and "
                    "Prometheus keeps no more than that"
                )
        for where, thresholds in [("alert_thresholds", self.alert_thresholds)] + [
            (f"databases[{index}].alert_thresholds", self.thresholds_for(db))
            for index, db in enumerate(self.databases)
            if {"forecast_critical_days", "forecast_warning_days"}
            & db.alert_thresholds.model_dump(exclude_none=True).keys()
        ]:
            if thresholds.forecast_critical_days >= thresholds.forecast_warning_days:
                problems.append(
                    f"{where}.forecast_critical_days: {thresholds.forecast_critical_days:g} is not below "
                    f"forecast_warning_days ({thresholds.forecast_warning_days:g}); the critical horizon is "
                    "the nearer one, make it smaller"
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

    def server_databases(self) -> list[Database]:
        """Each discovered server's own exporter, as a listed database named after its entry: it reads the
        server-wide statistics and lists the databases there."""
        return [
            Database(
                name=server.name,
                host=server.host,
                port=server.port,
                dbname=server.dbname,
                user=server.user,
                password_env=server.password_env,
                sslmode=server.sslmode,
                labels=server.labels,
            )
            for server in self.servers
        ]

    def thresholds_for(self, db: Database) -> AlertThresholds:
        """The global thresholds with ``db``'s overrides, and those of other databases on its server for
        server-wide keys."""
        return self.thresholds_for_each([db])[db.name]

    def thresholds_for_each(self, databases: list[Database]) -> dict[str, AlertThresholds]:
        """``thresholds_for`` each of ``databases``, by name, in one pass over the listed ones (one pass each
        took 2.1 s at 500)."""
        server_wide: dict[str, dict] = {}
        for db in self.databases:
            server_wide.setdefault(db.server, {}).update(
                db.alert_thresholds.model_dump(include=SERVER_THRESHOLDS, exclude_none=True)
            )
        return {
            db.name: self.alert_thresholds.model_copy(
                update={
                    **server_wide.get(db.server, {}),
                    **db.alert_thresholds.model_dump(
                        exclude={"postgres_down_for"}, exclude_none=True
                    ),
                }
            )
            for db in databases
        }

    def postgres_down_for(self, db: Database) -> str:
        return db.alert_thresholds.postgres_down_for or self.alert_timing.postgres_down_for
