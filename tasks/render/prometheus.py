"""Prometheus: prometheus.yml, the exporters as file-discovery targets, and the alert and recording rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import jinja2

from ..dashboard import cache_dir
from ..settings import (
    MIN_SCRAPES_PER_WINDOW,
    SERVER_THRESHOLDS,
    AlertThresholds,
    HostConfig,
    Settings,
    duration_seconds,
)
from ..settings.cluster import REPLICA_LABEL
from ..stack_model import (
    ALERTMANAGER_PORT,
    DISCOVERED_DIR,
    EXPORTER_PORT,
    NODE_EXPORTER_PORT,
    NODE_EXPORTER_SERVICE,
    PROMETHEUS_PORT,
    TEMPLATES_DIR,
    container_name,
    discovered_file,
    exporter_service,
    yaml_bytes,
)
from .api_auth import API_USER, PASSWORD_FILE, container_path
from .grafana import DASHBOARD_9628_UID
from .stores import remote_write_configs


def render_prometheus_config(settings: Settings) -> bytes:
    cfg = settings.config
    # Both APIs ask for the password (api_auth.py); Prometheus reads it from its file at every request.
    basic_auth = {
        "username": API_USER,
        "password_file": container_path("prometheus", PASSWORD_FILE),
    }
    stores = remote_write_configs(settings)
    external_labels = dict(cfg.external_labels)
    alertmanagers = [f"alertmanager:{ALERTMANAGER_PORT}"]
    alerting: dict[str, object] = {}
    if cfg.cluster is not None:
        # Every member's alerts are one alert (the replica label dropped), sent to every member's Alertmanager;
        # their gossip sends it once.
        external_labels[REPLICA_LABEL] = cfg.cluster.this_host
        alertmanagers += [f"{a}:{cfg.alertmanager_port}" for a in cfg.cluster.peers.values()]
        alerting["alert_relabel_configs"] = [{"action": "labeldrop", "regex": REPLICA_LABEL}]
    return yaml_bytes(
        {
            "global": {
                "scrape_interval": f"{cfg.scrape_interval_seconds}s",
                "evaluation_interval": f"{cfg.evaluation_interval_seconds}s",
                **({"external_labels": external_labels} if external_labels else {}),
            },
            "alerting": {
                **alerting,
                "alertmanagers": [
                    {"basic_auth": basic_auth, "static_configs": [{"targets": alertmanagers}]}
                ],
            },
            "rule_files": ["/etc/prometheus/rules/*.yml"],
            "scrape_configs": [
                {
                    "job_name": "prometheus",
                    "basic_auth": basic_auth,
                    "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}],
                },
                {
                    "job_name": "alertmanager",
                    "basic_auth": basic_auth,
                    "static_configs": [{"targets": [f"alertmanager:{ALERTMANAGER_PORT}"]}],
                },
                postgres_job(settings),
                {
                    "job_name": "node",
                    "static_configs": [
                        {
                            "targets": [f"{NODE_EXPORTER_SERVICE}:{NODE_EXPORTER_PORT}"],
                            # A member's own host alerts stay its own (named by it) in an HA group.
                            "labels": {"instance": processing_host_instance(settings)},
                        }
                    ],
                },
            ],
            **({"remote_write": stores} if stores else {}),
        }
    )


def postgres_job(settings: Settings) -> dict:
    """Every exporter, by file discovery: adding a database needs no Prometheus restart or reload. A
    discovered server's databases come from the list its own exporter writes (render/discovery.py)."""
    servers = settings.config.servers
    job: dict[str, object] = {
        "job_name": "postgres",
        "file_sd_configs": [
            {
                "files": [
                    "/etc/prometheus/targets/postgres.json",
                    *(discovered_file(server.name) for server in servers),
                ],
                "refresh_interval": "30s",
            }
        ],
    }
    if servers:
        # The listing's JSON is for discover.sh; kept, it would only fill Prometheus's label index.
        job["metric_relabel_configs"] = [{"action": "labeldrop", "regex": "target_group"}]
    return job


def processing_host_instance(settings: HostConfig) -> str:
    cluster = settings.config.cluster
    return cluster.this_host if cluster is not None else "processing-host"


def render_postgres_targets(settings: Settings) -> bytes:
    targets = [
        {
            "targets": [f"{exporter_service(db.name)}:{EXPORTER_PORT}"],
            "labels": {**db.labels, "database": db.name, "server": db.server, "instance": db.name},
        }
        for db in settings.databases
    ]
    return (json.dumps(targets, indent=2, ensure_ascii=False) + "\n").encode()


def _compiled_rule_templates() -> jinja2.BytecodeCache | None:
    """The rule templates compiled, kept on the controller between runs (keyed by each template's source):
    compiling them is most of a run's rendering (0.2 s; 4 ms from here). None where the folder cannot be made.
    This environment's alone: its delimiters are not part of the key."""
    directory = cache_dir() / "rule-templates"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def _rules_jinja() -> jinja2.Environment:
    """Jinja for the rule template: [[ ]] and [% %], so Prometheus's {{ }} is written as it is."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        bytecode_cache=_compiled_rule_templates(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
    # A JSON string is a YAML string; Jinja's own tojson would also turn < and > into \u003c for HTML.
    env.filters["tojson"] = json.dumps
    env.filters["oneline"] = lambda text: " ".join(
        line.strip() for line in text.splitlines() if line.strip()
    )
    env.filters["sel"] = lambda match: (
        "{" + match + "}" if match else ""
    )  # metric[[ v.match | sel ]]
    env.filters["also"] = lambda match: (
        ", " + match if match else ""
    )  # {job="x"[[ v.match | also ]]}
    env.filters["merged"] = lambda first, second: {**first, **second}
    env.filters["window"] = lambda duration: f"[{duration}]"  # a range: metric[[ w | window ]]
    env.filters["num"] = _number
    env.filters["seconds"] = _seconds_text
    env.filters["gib_bytes"] = lambda gib: _number(gib * 2**30)  # a threshold in GiB, as bytes
    env.filters["duration_seconds"] = lambda duration: _number(
        duration_seconds(duration)
    )  # '1d' -> 86400
    return env


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds_text(value: float) -> str:
    """A threshold in seconds as people read it: 300 -> '5m', 5400 -> '1h30m', 604800 -> '7d', 0.5 -> '0.5s'."""
    if not float(value).is_integer() or value < 60:
        return _number(value) + "s"
    rest, parts = int(value), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


@dataclass(frozen=True)
class RuleVariant:
    """One copy of the rules for the databases (or servers) that share thresholds.

    ``match`` is the PromQL matcher selecting them, ``labels`` tells the copies apart (a static
    ``thresholds`` label: "default", or the members); both are empty when one copy serves all.
    """

    thresholds: AlertThresholds
    down_for: str = ""
    match: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def promql_string(value: str) -> str:
    return json.dumps(value)  # PromQL string literals take JSON's escapes


def label_matcher(label: str, values: list[str], negate: bool = False) -> str:
    """A PromQL matcher for any of ``values`` (with ``negate``, for none of them): ``label="a"`` or
    ``label=~"a|b"``, each value taken literally."""
    if len(values) == 1:
        return f"{label}{'!=' if negate else '='}{promql_string(values[0])}"
    alternatives = "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value) for value in values)
    return f"{label}{'!~' if negate else '=~'}{promql_string(alternatives)}"


def _variants(
    label: str, groups: dict[tuple, tuple[RuleVariant, list[str]]], default: tuple
) -> list[RuleVariant]:
    """One copy per group; the default thresholds' copy selects every value the others do not, so that it
    also covers what no setting names: the databases pgmon discovers."""
    if len(groups) == 1:
        return [variant for variant, _ in groups.values()]
    others = [
        member for key, (_, members) in groups.items() if key != default for member in members
    ]
    return [
        replace(
            variant,
            match=label_matcher(label, others, negate=True)
            if key == default
            else label_matcher(label, members),
            labels={"thresholds": "default" if key == default else ", ".join(members)},
        )
        for key, (variant, members) in groups.items()
    ]


def rule_variants(settings: HostConfig) -> tuple[list[RuleVariant], list[RuleVariant]]:
    """Per-database and per-server copies of the rules, one per distinct set of thresholds."""
    cfg = settings.config

    def database_key(thresholds: AlertThresholds, down_for: str) -> tuple:
        return (tuple(thresholds.model_dump(exclude=SERVER_THRESHOLDS).items()), down_for)

    def server_key(thresholds: AlertThresholds) -> tuple:
        return tuple(thresholds.model_dump(include=SERVER_THRESHOLDS).items())

    by_database: dict[tuple, tuple[RuleVariant, list[str]]] = {}
    by_server: dict[tuple, tuple[RuleVariant, list[str]]] = {}
    thresholds_by_database = cfg.thresholds_for_each(settings.databases)
    for db in settings.databases:
        thresholds, down_for = thresholds_by_database[db.name], cfg.postgres_down_for(db)
        variant = RuleVariant(thresholds, down_for)
        by_database.setdefault(database_key(thresholds, down_for), (variant, []))[1].append(db.name)
        servers = by_server.setdefault(server_key(thresholds), (variant, []))[1]
        if db.server not in servers:
            servers.append(db.server)
    default_database = database_key(cfg.alert_thresholds, cfg.alert_timing.postgres_down_for)
    if cfg.servers:
        # The databases found on a server take the default thresholds.
        by_database.setdefault(
            default_database,
            (RuleVariant(cfg.alert_thresholds, cfg.alert_timing.postgres_down_for), []),
        )
    return (
        _variants("database", by_database, default_database),
        _variants("server", by_server, server_key(cfg.alert_thresholds)),
    )


def dashboard_link(grafana_url: str | None) -> str:
    """The ``dashboard`` annotation of every database and server alert: dashboard 9628 at ``pgmon_grafana_url``
    filtered on the alert's server and, where it has one, its database, as a Prometheus template (``urlquery``
    escapes the values); empty without the setting (docs/alerts.md, "Dashboard links")."""
    if not grafana_url:
        return ""
    return (
        f"{grafana_url}/d/{DASHBOARD_9628_UID}/?var-server={{{{ $labels.server | urlquery }}}}"
        "{{ with $labels.database }}&var-instance={{ . | urlquery }}{{ end }}"
    )


def render_rules(settings: HostConfig) -> bytes:
    """The alert rules: they read no secret, so the drill renders them from the channels' settings too."""
    cfg = settings.config
    databases, servers = rule_variants(settings)
    extra_labels = sorted({key for db in settings.databases for key in db.labels})
    template = _rules_jinja().get_template("prometheus/pgmon.rules.yml.j2")
    return template.render(
        exporter_container=container_name(cfg.project, exporter_service("{{ $labels.database }}")),
        node_exporter_container=container_name(cfg.project, NODE_EXPORTER_SERVICE),
        # Labels a rule built on a server-wide series takes from pgmon_database_info.
        join_labels=", ".join(["database", *extra_labels]),
        databases=databases,
        servers=servers,
        host_thresholds=cfg.alert_thresholds,
        down_for=cfg.alert_timing.postgres_down_for,
        host_rate_window=f"{max(300, MIN_SCRAPES_PER_WINDOW * cfg.scrape_interval_seconds)}s",
        dashboard=dashboard_link(cfg.grafana_url),
        runbook_base=cfg.runbook_base_url,
        replica_label=REPLICA_LABEL if cfg.cluster is not None else "",
        discovered=[
            {
                "name": server.name,
                "server": server.server,
                "file": discovered_file(server.name),
                "list_file": f"{cfg.base_dir}/{DISCOVERED_DIR}/{server.name}.json",
                "container": container_name(cfg.project, exporter_service(server.name)),
                # Three listings missed, plus the 30s in which Prometheus may not have re-read the file.
                "stale_after": f"{3 * cfg.scrape_interval_seconds + 30}s",
            }
            for server in cfg.servers
        ],
    ).encode()


def render_recording_rules(settings: Settings) -> bytes:
    """The series pgmon's dashboards read: per-database and per-table ratios and rates."""
    window = max(60, MIN_SCRAPES_PER_WINDOW * settings.config.scrape_interval_seconds)
    template = _rules_jinja().get_template("prometheus/pgmon.recording.yml.j2")
    return template.render(window=f"{window}s").encode()
