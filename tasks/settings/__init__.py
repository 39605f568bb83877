"""pgmon's settings: one validated object built from host data and the environment.

Every pgmon setting is a host-data key starting with ``pgmon_`` (set in ``group_data/*.py``, the
inventory, or ``--data``). Secrets are never settings: a setting names the *environment variable*
that holds the secret, and the value is read from the controller's environment, once. Validation
collects every problem and raises one ``DeployError`` that names each field and how to fix it,
before any operation touches the host.

    errors       DeployError and the report that lists every problem
    fields       the value grammars (names, durations, hosts, URLs, labels) as types
    images       the default images, the oldest versions pgmon supports, a tag's version
    thresholds   the alert rules' thresholds, globally and per database
    models       the deploy's settings
    remote_write the long-term stores Prometheus copies its samples to
    discovery    servers whose databases pgmon finds by itself
    cluster      an HA group of processing hosts: its members, read from the inventory
    run_options  what single commands read (silence, uninstall, backup, restore, lock take-over)
    load         host data + environment -> HostConfig (no secret) or Settings (with the secrets)

The names below are the ones the rest of pgmon imports: ``from .settings import Settings``.
"""

from .cluster import acting_member
from .discovery import DiscoveredServer
from .errors import SETTING_PREFIX, DeployError
from .fields import (
    DEFAULT_RUNBOOK_BASE_URL,
    GRAFANA_URL_MAX,
    MAX_DURATION_SECONDS,
    PROMQL_KEYWORDS,
    RESERVED_LABELS,
    SERIES_LABELS,
    Count,
    Duration,
    EnvName,
    GrafanaUrl,
    Host,
    HttpUrl,
    Interval,
    IPAddress,
    Labels,
    Name,
    Percent,
    PerSecond,
    Port,
    RunbookBaseUrl,
    Seconds,
    Severities,
    Severity,
    Sha256,
    duration_seconds,
)
from .images import DEFAULT_IMAGES, MINIMUM_VERSIONS, Component, image_version
from .load import (
    ChannelSettings,
    HostConfig,
    Settings,
    SettingsInput,
    build_settings,
    load_channel_settings,
    load_config,
    load_settings,
)
from .models import (
    DASHBOARD_9628_URL,
    SYSTEM_DIRS,
    SYSTEM_TREES,
    AlertTiming,
    Dashboard9628,
    Database,
    DeploySettings,
    Discord,
    GrafanaCertificate,
    Telegram,
    Watchdog,
)
from .remote_write import RemoteWrite
from .run_options import (
    SILENCE_ID_RE,
    SILENCE_MAX_SECONDS,
    SILENCE_REASON_MAX,
    RunOptions,
    Silence,
)
from .thresholds import (
    HOST_THRESHOLDS,
    MIN_SCRAPES_PER_WINDOW,
    SERVER_THRESHOLDS,
    WINDOW_THRESHOLDS,
    AlertThresholds,
    DatabaseAlertThresholds,
)

__all__ = [
    "acting_member",
    "DASHBOARD_9628_URL",
    "DEFAULT_IMAGES",
    "DEFAULT_RUNBOOK_BASE_URL",
    "GRAFANA_URL_MAX",
    "HOST_THRESHOLDS",
    "MAX_DURATION_SECONDS",
    "MINIMUM_VERSIONS",
    "MIN_SCRAPES_PER_WINDOW",
    "PROMQL_KEYWORDS",
    "RESERVED_LABELS",
    "SERIES_LABELS",
    "SERVER_THRESHOLDS",
    "SETTING_PREFIX",
    "SILENCE_ID_RE",
    "SILENCE_MAX_SECONDS",
    "SILENCE_REASON_MAX",
    "SYSTEM_DIRS",
    "SYSTEM_TREES",
    "WINDOW_THRESHOLDS",
    "AlertThresholds",
    "AlertTiming",
    "ChannelSettings",
    "Component",
    "Count",
    "Dashboard9628",
    "Database",
    "DatabaseAlertThresholds",
    "DeployError",
    "DeploySettings",
    "DiscoveredServer",
    "Discord",
    "Duration",
    "EnvName",
    "GrafanaCertificate",
    "GrafanaUrl",
    "Host",
    "HostConfig",
    "HttpUrl",
    "IPAddress",
    "Interval",
    "Labels",
    "Name",
    "PerSecond",
    "Percent",
    "Port",
    "RemoteWrite",
    "RunbookBaseUrl",
    "RunOptions",
    "Seconds",
    "Settings",
    "SettingsInput",
    "Severities",
    "Severity",
    "Sha256",
    "Silence",
    "Telegram",
    "Watchdog",
    "build_settings",
    "duration_seconds",
    "image_version",
    "load_channel_settings",
    "load_config",
    "load_settings",
]
