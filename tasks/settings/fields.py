"""The grammar of pgmon's setting values: each type checks one kind of value and says how to write it.

The models (models.py, thresholds.py, run_options.py) are made of these types. A check's message names
the value and the fix; pydantic puts the setting's name in front (errors.py). ``Strict`` is every
model's base: an unknown key is a typo, refused rather than ignored.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
    "discovered_by",  # a discovered database's server entry (settings/discovery.py)
    "tenant",
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


class Strict(BaseModel):
    # Unknown keys are typos: refuse them instead of silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


def server_address(host: str, port: int) -> str:
    """A PostgreSQL server as people write it, and as the ``server`` label says: host:port ([v6]:port)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


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


def _check_external_labels(labels: dict[str, str]) -> dict[str, str]:
    empty = sorted(key for key, value in labels.items() if not value)
    if empty:
        raise ValueError(
            f"labels {empty} have no value: Prometheus drops an empty label; give each a value"
        )
    ours = sorted(key for key in labels if key.startswith("pgmon_"))
    if ours:
        # pgmon_drill on every alert would make each one a drill.
        raise ValueError(
            f"labels {ours}: names starting with pgmon_ are pgmon's own; choose another name"
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


def http_url_problem(value: str) -> str | None:
    """Why ``value`` is not an http(s) URL, without repeating it (it may be a secret's value); None if
    it is one. Settings and the secrets holding a URL are checked alike."""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        return "is not an http(s) URL (http:// or https://, then a host; no spaces)"
    return None


def _check_http_url(value: str) -> str:
    problem = http_url_problem(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
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


# The address people open Grafana at, which every alert's link starts with: kept to characters that need no
# escaping in a URL, Discord's markdown or Telegram's HTML, and short enough for a link within their limits.
_GRAFANA_URL_RE = re.compile(r"^https?://[A-Za-z0-9._~:/%-]+$")
GRAFANA_URL_MAX = 150
# Where the runbooks are published: the project's own page (only text in an annotation; nothing fetches it).
DEFAULT_RUNBOOK_BASE_URL = "https://github.com/pgmon/pgmon/blob/main/docs/runbooks.md"


def _check_link_base(value: str, what: str, examples: str) -> str:
    parts = urlsplit(value)
    if not _GRAFANA_URL_RE.fullmatch(value) or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{value!r} is not the http(s) address of {what}: write e.g. {examples} (letters, digits "
            "and . _ ~ : / % - only; no query or fragment)"
        )
    if len(value) > GRAFANA_URL_MAX:
        raise ValueError(
            f"is longer than {GRAFANA_URL_MAX} characters; the links it starts must fit in a message"
        )
    return value.rstrip("/")


def _check_grafana_url(value: str) -> str:
    return _check_link_base(
        value,
        "Grafana as people open it",
        "'https://grafana.example.com' or 'https://example.com/grafana'",
    )


def _check_runbook_base_url(value: str) -> str:
    return _check_link_base(
        value, "the runbook page", "'https://wiki.example.com/pgmon/runbooks.md'"
    )


def _check_severities(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(
            "list at least one severity ('critical', 'warning'), or remove the channel"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"{value!r} lists a severity twice")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Duration = Annotated[str, AfterValidator(_check_duration)]
Interval = Annotated[str, AfterValidator(_check_duration), AfterValidator(_check_positive_duration)]
Host = Annotated[str, AfterValidator(_check_host)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
DownloadUrl = Annotated[str, AfterValidator(_check_dashboard_url)]  # {revision} is filled in
GrafanaUrl = Annotated[str, AfterValidator(_check_grafana_url)]
RunbookBaseUrl = Annotated[str, AfterValidator(_check_runbook_base_url)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
ExternalLabels = Annotated[Labels, AfterValidator(_check_external_labels)]
Port = Annotated[int, Field(ge=1, le=65535)]
IPAddress = Annotated[str, AfterValidator(_check_address)]
Sha256 = Annotated[str, AfterValidator(_check_sha256)]
Percent = Annotated[float, Field(gt=0, le=100)]
Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
PerSecond = Annotated[float, Field(ge=0)]
Severity = Literal["critical", "warning"]
Severities = Annotated[list[Severity], AfterValidator(_check_severities)]
