"""Step 4: prove over HTTP that the stack works, and say plainly what does not.

Checks, from the host's point of view (through the SSH connection): every
database's exporter is scraped and reports ``pg_up 1`` without scrape errors;
Prometheus is ready with its config and rules loaded; Alertmanager is ready
with the expected receivers; Grafana is healthy, its datasources (Prometheus's, each store's) answer and
pgmon's dashboards (9628 and its own) are there; each store's remote-write queue keeps up (verify_stores). It polls until all pass or the deadline
(``pgmon_verify_timeout_seconds``), then prints one line per component and
database. Anything failing fails the run; nothing is stopped.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
import time
from collections.abc import Collection

from pyinfra import host
from pyinfra.api import deploy, operation

from .grafana_tls import first_certificate, pinned_context
from .host_state import host_output
from .http_tunnel import HostHTTP
from .render.alertmanager import render_alertmanager_config
from .render.api_auth import api_credentials
from .render.grafana import DATASOURCE_UID, provisioned_dashboard_uids
from .render.stores import STORE_DATASOURCE_UID
from .reporting import failure, log_lines
from .settings import Settings
from .stack_model import GRAFANA_SELF_SIGNED_CERT, GRAFANA_TLS_DIR, container_name
from .verify_databases import (
    Finding,
    check_databases,
    check_discovered_servers,
    exporter_readings,
    postgres_targets,
    slow_query_coverage,
)
from .verify_stores import check_stores


def check_prometheus(settings: Settings, http: HostHTTP) -> list[Finding]:
    port = settings.config.prometheus_port
    container = container_name(settings.config.project, "prometheus")
    auth = api_credentials(settings)
    status, body = http.get("127.0.0.1", port, "/-/ready", auth)
    if status != 200:
        return [
            Finding(
                "prometheus",
                False,
                f"not ready on 127.0.0.1:{port} ({status or body.decode()})",
                f"docker logs {container}",
            )
        ]
    # From the status API, not the self-scraped metric: one scrape refused while the APIs' password changes
    # marks that metric stale, and a healthy reload would read as failed.
    _, runtime = http.get_json("127.0.0.1", port, "/api/v1/status/runtimeinfo", auth)
    if (runtime or {}).get("data", {}).get("reloadConfigSuccess") is not True:
        return [
            Finding(
                "prometheus",
                False,
                "its last configuration reload failed",
                f"docker logs {container} | grep -i error",
            )
        ]
    _, rules = http.get_json("127.0.0.1", port, "/api/v1/rules", auth)
    names = {r["name"] for g in (rules or {}).get("data", {}).get("groups", []) for r in g["rules"]}
    if "PostgresDown" not in names:
        return [
            Finding(
                "prometheus",
                False,
                "the pgmon alert rules are not loaded",
                f"docker logs {container} | grep -i rule",
            )
        ]
    _, managers = http.get_json("127.0.0.1", port, "/api/v1/alertmanagers", auth)
    active = (managers or {}).get("data", {}).get("activeAlertmanagers") or []
    cluster = settings.config.cluster
    if not active or (cluster is not None and len(active) < len(cluster.members)):
        wanted = "Alertmanager" if cluster is None else f"all {len(cluster.members)} Alertmanagers"
        return [
            Finding(
                "prometheus",
                False,
                f"does not see {wanted} yet ({len(active)} found)",
                f"docker logs {container}",
            )
        ]
    connected = "Alertmanager" if cluster is None else f"{len(active)} Alertmanagers"
    return [
        Finding(
            "prometheus",
            True,
            f"ready, config and {len(names)} rules loaded, {connected} connected",
        )
    ]


def check_alertmanager(settings: Settings, http: HostHTTP) -> list[Finding]:
    port = settings.config.alertmanager_port
    container = container_name(settings.config.project, "alertmanager")
    auth = api_credentials(settings)
    status, body = http.get_json("127.0.0.1", port, "/api/v2/status", auth)
    if status != 200 or not body:
        return [
            Finding(
                "alertmanager",
                False,
                f"not answering on 127.0.0.1:{port}",
                f"docker logs {container}",
            )
        ]
    expected = [
        name
        for name, secret in (
            ("discord", settings.discord_webhook_url),
            ("telegram", settings.telegram_bot_token),
        )
        if secret is not None
    ]
    _, metrics = http.get("127.0.0.1", port, "/metrics", auth)
    loaded = dict(_ALERTMANAGER_CONFIG_RE.findall(metrics.decode(errors="replace")))
    if loaded.get("last_reload_successful") != "1" or float(
        loaded.get("hash", "nan")
    ) != config_hash_metric(render_alertmanager_config(settings)):
        # Alertmanager keeps the configuration it had when a reload fails.
        return [
            Finding(
                "alertmanager",
                False,
                "is not running the configuration pgmon just wrote (its last reload "
                "failed, or it did not reload)",
                f"docker logs {container} | grep -i -e error -e reload",
            )
        ]
    return [
        *cluster_findings(settings, body.get("cluster") or {}),
        Finding(
            "alertmanager", True, f"ready, configuration loaded, receivers: {', '.join(expected)}"
        ),
    ]


def cluster_findings(settings: Settings, status: dict) -> list[Finding]:
    """An HA group's member sees every member in its gossip (Alertmanager's /api/v2/status ``cluster``)."""
    cluster = settings.config.cluster
    if cluster is None:
        return []
    seen = {peer.get("address") for peer in status.get("peers") or []}
    missing = [
        name
        for name, address in cluster.members.items()
        if f"{address}:{cluster.gossip_port}" not in seen
    ]
    if missing or status.get("status") != "ready":
        return [
            Finding(
                "cluster",
                False,
                f"{cluster.name}: this Alertmanager ({status.get('status', 'no cluster')}) does not see "
                f"{', '.join(missing) or 'its peers settled'}",
                f"is each missing member up, and its port {cluster.gossip_port} (TCP and UDP) reachable from "
                "this host? docker logs of both Alertmanagers name the peers they reach",
            )
        ]
    return [Finding("cluster", True, f"{cluster.name}: all {len(cluster.members)} members gossip")]


_ALERTMANAGER_CONFIG_RE = re.compile(
    r"^alertmanager_config_(hash|last_reload_successful) (\S+)$", re.MULTILINE
)


def config_hash_metric(config: bytes) -> float:
    """``alertmanager_config_hash`` for a configuration file's bytes: the first 48 bits of its MD5, as Alertmanager
    computes it (little-endian)."""
    return float(int.from_bytes(hashlib.md5(config).digest()[:6], "little"))


def grafana_certificate(settings: Settings, run_shell) -> bytes | None:
    """The certificate Grafana must present: the user's, or the self-signed one read back from the host (over SSH,
    so it is the host's own); None for plain HTTP or when the host has none."""
    if not settings.config.grafana_https:
        return None
    if settings.grafana_tls_certificate is not None:
        return settings.grafana_tls_certificate
    path = f"{settings.config.base_dir}/{GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_CERT}"
    pem = "\n".join(run_shell(f"cat {shlex.quote(path)}")).encode()
    return pem + b"\n" if b"-----BEGIN CERTIFICATE-----" in pem else None


def describe_certificate(pem: bytes, own: bool) -> str:
    """Whose certificate, its names, SHA-256 fingerprint and end: what a user compares before trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_der_x509_certificate(first_certificate(pem))
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        shown = [str(n.value) for n in names][:4]
    except x509.ExtensionNotFound:
        shown = []
    fingerprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return (
        f"{'your' if own else 'self-signed'} certificate for {', '.join(shown) or leaf.subject.rfc4514_string()}"
        f", valid until {leaf.not_valid_after_utc:%Y-%m-%d}, SHA-256 "
        + ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2))
    )


def check_grafana(
    settings: Settings, http: HostHTTP, certificate: bytes | None = None
) -> list[Finding]:
    cfg = settings.config
    address = "127.0.0.1" if cfg.grafana_bind_address == "0.0.0.0" else cfg.grafana_bind_address
    container = container_name(cfg.project, "grafana")
    auth = (cfg.grafana_admin_user, settings.grafana_admin_password.get_secret_value())

    def failed(detail: str, hint: str = f"docker logs {container}") -> list[Finding]:
        return [Finding("grafana", False, detail, hint)]

    tls = {}
    if cfg.grafana_https:
        if certificate is None:
            return failed(
                f"has no certificate at {cfg.base_dir}/{GRAFANA_TLS_DIR}/{GRAFANA_SELF_SIGNED_CERT}",
                "run the deploy again: it makes one",
            )
        tls = {"tls": pinned_context(certificate), "pin": first_certificate(certificate)}

    def api(path: str):
        return http.get_json(address, cfg.grafana_port, path, auth, **tls)

    status, health = http.get_json(address, cfg.grafana_port, "/api/health", **tls)
    if status != 200 or (health or {}).get("database") != "ok":
        why = f" ({health_error(http, address, cfg.grafana_port, tls)})" if status == 0 else ""
        return failed(f"not healthy on {address}:{cfg.grafana_port}{why}")
    status, _ = api(f"/api/datasources/uid/{DATASOURCE_UID}/health")
    if status == 401:
        return failed(f"refuses the admin password from ${cfg.grafana_admin_password_env}")
    if status != 200:
        return failed(f"its Prometheus datasource does not answer (HTTP {status})")
    for store in settings.config.remote_write:
        if store.query_url is None:
            continue
        status, body = api(
            f"/api/datasources/uid/{STORE_DATASOURCE_UID.format(name=store.name)}/health"
        )
        if status != 200:
            return failed(
                f"its data source for store {store.name} ({store.query_url}) does not answer "
                f"(HTTP {status}: {(body or {}).get('message', '')})"
            )
    uids = provisioned_dashboard_uids()
    for uid in uids:
        status, _ = api(f"/api/dashboards/uid/{uid}")
        if status != 200:
            return failed(
                f"dashboard {uid} is not present (HTTP {status})",
                f"docker exec {container} ls /etc/grafana/dashboards; docker logs {container}",
            )
    findings = [
        Finding(
            "grafana",
            True,
            f"healthy{' over HTTPS' if tls else ''}, datasource answers, dashboards "
            f"present: {', '.join(uids)}",
        )
    ]
    if tls:
        findings.append(
            Finding(
                "grafana https",
                True,
                describe_certificate(certificate, settings.grafana_tls_certificate is not None),
            )
        )
    return findings


def plain_http_exposure(settings: Settings) -> list[Finding]:
    """A warning when Grafana speaks plain HTTP on an address other machines reach: its admin password and
    session cookies then cross the network in clear. Not a failure, so that a deployment already running
    this way keeps deploying."""
    cfg = settings.config
    if cfg.grafana_https or ipaddress.ip_address(cfg.grafana_bind_address).is_loopback:
        return []
    return [
        Finding(
            "grafana http",
            True,
            f"WARNING plain HTTP on {cfg.grafana_bind_address}:{cfg.grafana_port}: the admin password and "
            "sessions cross the network in clear; remove pgmon_grafana_https = False (HTTPS is the "
            'default), or set pgmon_grafana_bind_address = "127.0.0.1" behind your own TLS proxy',
        )
    ]


def health_error(http: HostHTTP, address: str, port: int, tls: dict) -> str:
    """Why nothing answered: over HTTPS, a certificate other than pgmon's is said so."""
    _, body = http.get(address, port, "/api/health", **tls)
    reason = body.decode(errors="replace")
    if "certificate" in reason.lower():
        return f"it does not present the certificate pgmon installed: {reason[:200]}"
    return reason[:200]


def check_stack(
    settings: Settings,
    http: HostHTTP,
    run_shell,
    certificate: bytes | None = None,
    live: Collection[str] | None = None,
) -> list[Finding]:
    """Every part's finding; the exporters of the databases ``live`` (None: all) asked now (``exporter_readings``)."""
    readings = exporter_readings(settings, http, run_shell, live)
    targets = postgres_targets(settings, http)  # one answer for both checks below
    return (
        check_prometheus(settings, http)
        + check_alertmanager(settings, http)
        + check_grafana(settings, http, certificate)
        + plain_http_exposure(settings)
        + check_databases(settings, targets, readings)
        + check_discovered_servers(settings, http, targets)
        + check_stores(settings, http)
        + [slow_query_coverage(settings)]
    )


def wait_for_stack(
    settings: Settings,
    http: HostHTTP,
    run_shell,
    live: Collection[str] | None = None,
    clock=time.monotonic,
    pause=time.sleep,
) -> list[Finding]:
    """Poll ``check_stack`` until everything passes or the deadline; return the last findings."""
    deadline = clock() + settings.config.verify_timeout_seconds
    certificate = grafana_certificate(settings, run_shell)
    while True:
        findings = check_stack(settings, http, run_shell, certificate, live)
        if all(f.ok for f in findings) or clock() >= deadline:
            return findings
        pause(1.0)


def report(findings: list[Finding]) -> list[str]:
    width = max(len(f.subject) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{f.subject.ljust(width)}  {'ok  ' if f.ok else 'FAIL'}  {f.detail}")
        if not f.ok and f.hint:
            lines.append(f"{' ' * width}        check: {f.hint}")
    return lines


@operation()
def verify(settings: Settings, live: Collection[str] | None = None):
    """
    Check the running stack over HTTP; fail, with what to check, if any part does not work.

    + settings: the validated pgmon settings
    + live: the databases whose exporters are asked now (None: all); the others pass on Prometheus's last
      scrape when it is younger than a scrape interval and healthy, and are asked too when it is not

    **Example:**

    .. code:: python

        verify(name="Verify pgmon over HTTP", settings=settings)
    """
    # Runs at execution only: before that, the containers may not exist yet.
    if not host.state.is_executing:
        return
    http = HostHTTP(host)
    try:
        findings = wait_for_stack(
            settings, http, lambda command: host_output(host, command, check=False), live
        )
    finally:
        http.close()
    failed = [f for f in findings if not f.ok]
    lines = report(findings)
    if not failed:
        log_lines(host, lines)
        return
    summary = f"pgmon verification failed for {', '.join(f.subject for f in failed)}; everything else keeps running:"
    yield failure([summary] + lines)


@deploy("Verify the pgmon stack")
def verify_stack(settings: Settings, live: Collection[str] | None = None):
    verify(name="Verify pgmon over HTTP", settings=settings, live=live)
