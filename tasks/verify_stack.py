"""Step 4: prove over HTTP that the stack works, and say plainly what does not.

Checks, from the host's point of view (through the SSH connection): every
database's exporter is scraped and reports ``pg_up 1`` without scrape errors;
Prometheus is ready with its config and rules loaded; Alertmanager is ready
with the expected receivers; Grafana is healthy, its datasource answers and
dashboard 9628 is there. It polls until all pass or the deadline
(``pgmon_verify_timeout_seconds``), then prints one line per component and
database. Anything failing fails the run; nothing is stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, deploy, operation

from .http_tunnel import HostHTTP
from .render import DASHBOARD_9628_UID, DATASOURCE_UID
from .settings import Settings


@dataclass(frozen=True)
class Finding:
    subject: str
    ok: bool
    detail: str
    hint: str = ""


def _vector(http: HostHTTP, port: int, query: str) -> dict[str, float]:
    """An instant query's result by ``database`` label (or the only series, under "")."""
    status, body = http.get_json("127.0.0.1", port, f"/api/v1/query?query={quote(query)}")
    if status != 200 or not body or body.get("status") != "success":
        return {}
    return {r["metric"].get("database", ""): float(r["value"][1]) for r in body["data"]["result"]}


def check_prometheus(settings: Settings, http: HostHTTP) -> list[Finding]:
    port = settings.config.prometheus_port
    container = f"{settings.config.project}-prometheus"
    status, body = http.get("127.0.0.1", port, "/-/ready")
    if status != 200:
        return [Finding("prometheus", False, f"not ready on 127.0.0.1:{port} ({status or body.decode()})",
                        f"docker logs {container}")]
    if _vector(http, port, "prometheus_config_last_reload_successful").get("") != 1:
        return [Finding("prometheus", False, "its last configuration reload failed",
                        f"docker logs {container} | grep -i error")]
    _, rules = http.get_json("127.0.0.1", port, "/api/v1/rules")
    names = {r["name"] for g in (rules or {}).get("data", {}).get("groups", []) for r in g["rules"]}
    if "PostgresDown" not in names:
        return [Finding("prometheus", False, "the pgmon alert rules are not loaded",
                        f"docker logs {container} | grep -i rule")]
    _, managers = http.get_json("127.0.0.1", port, "/api/v1/alertmanagers")
    if not (managers or {}).get("data", {}).get("activeAlertmanagers"):
        return [Finding("prometheus", False, "does not see Alertmanager yet", f"docker logs {container}")]
    return [Finding("prometheus", True, f"ready, config and {len(names)} rules loaded, Alertmanager connected")]


def check_databases(settings: Settings, http: HostHTTP) -> list[Finding]:
    port = settings.config.prometheus_port
    _, body = http.get_json("127.0.0.1", port, "/api/v1/targets?state=active")
    targets = {
        t["labels"].get("database"): t
        for t in (body or {}).get("data", {}).get("activeTargets", [])
        if t["labels"].get("job") == "postgres"
    }
    pg_up = _vector(http, port, 'pg_up{job="postgres"}')
    scrape_error = _vector(http, port, 'pg_exporter_last_scrape_error{job="postgres"}')
    findings = []
    for db in settings.databases:
        subject = f"database {db.name}"
        where = f"{db.server}/{db.dbname}"
        container = f"{settings.config.project}-exporter-{db.name}"
        target = targets.get(db.name)
        if target is None:
            findings.append(Finding(subject, False, f"not discovered by Prometheus yet ({where})",
                                    "is prometheus/targets/postgres.json on the host current?"))
        elif target["health"] != "up":
            error = target.get("lastError") or "not scraped yet"
            findings.append(Finding(subject, False, f"exporter not answering: {error}", f"docker logs {container}"))
        elif db.name not in pg_up:
            findings.append(Finding(subject, False, "no pg_up sample yet", f"docker logs {container}"))
        elif pg_up[db.name] != 1:
            findings.append(Finding(
                subject, False, f"PostgreSQL unreachable from the exporter (pg_up 0) at {where}",
                f"is the server up and listening? does pg_hba.conf admit user {db.user!r} from the Docker "
                f"network? is ${db.password_env} right? then: docker logs {container}",
            ))
        elif scrape_error.get(db.name, 0) != 0:
            findings.append(Finding(subject, False, "exporter reports a scrape error",
                                    f"does {db.user!r} have the pg_monitor role? docker logs {container}"))
        else:
            findings.append(Finding(subject, True, f"pg_up 1 at {where}"))
    return findings


def check_alertmanager(settings: Settings, http: HostHTTP) -> list[Finding]:
    port = settings.config.alertmanager_port
    container = f"{settings.config.project}-alertmanager"
    status, body = http.get_json("127.0.0.1", port, "/api/v2/status")
    if status != 200 or not body:
        return [Finding("alertmanager", False, f"not answering on 127.0.0.1:{port}", f"docker logs {container}")]
    expected = [name for name, secret in (("discord", settings.discord_webhook_url),
                                          ("telegram", settings.telegram_bot_token)) if secret is not None]
    loaded = body.get("config", {}).get("original", "")
    missing = [name for name in expected if f"name: {name}" not in loaded]
    if missing:
        return [Finding("alertmanager", False, f"running an old configuration (no receiver {', '.join(missing)})",
                        f"docker logs {container} | grep -i error")]
    return [Finding("alertmanager", True, f"ready, receivers: {', '.join(expected)}")]


def check_grafana(settings: Settings, http: HostHTTP) -> list[Finding]:
    cfg = settings.config
    address = "127.0.0.1" if cfg.grafana_bind_address == "0.0.0.0" else cfg.grafana_bind_address
    container = f"{cfg.project}-grafana"
    auth = (cfg.grafana_admin_user, settings.grafana_admin_password.get_secret_value())
    status, health = http.get_json(address, cfg.grafana_port, "/api/health")
    if status != 200 or (health or {}).get("database") != "ok":
        return [Finding("grafana", False, f"not healthy on {address}:{cfg.grafana_port}", f"docker logs {container}")]
    status, _ = http.get_json(address, cfg.grafana_port, f"/api/datasources/uid/{DATASOURCE_UID}/health", auth)
    if status == 401:
        return [Finding("grafana", False, "refuses the admin password from "
                        f"${cfg.grafana_admin_password_env}", f"docker logs {container}")]
    if status != 200:
        return [Finding("grafana", False, f"its Prometheus datasource does not answer (HTTP {status})",
                        f"docker logs {container}")]
    status, _ = http.get_json(address, cfg.grafana_port, f"/api/dashboards/uid/{DASHBOARD_9628_UID}", auth)
    if status != 200:
        return [Finding("grafana", False, f"dashboard 9628 is not present (HTTP {status})",
                        f"docker exec {container} ls /etc/grafana/dashboards")]
    return [Finding("grafana", True, "healthy, datasource answers, dashboard 9628 present")]


def check_stack(settings: Settings, http: HostHTTP) -> list[Finding]:
    return (
        check_prometheus(settings, http)
        + check_alertmanager(settings, http)
        + check_grafana(settings, http)
        + check_databases(settings, http)
    )


def wait_for_stack(settings: Settings, http: HostHTTP, clock=time.monotonic, pause=time.sleep) -> list[Finding]:
    """Poll ``check_stack`` until everything passes or the deadline; return the last findings."""
    deadline = clock() + settings.config.verify_timeout_seconds
    while True:
        findings = check_stack(settings, http)
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


def _fail(state, host, lines: list[str]) -> bool:
    for line in lines:
        logger.error(f"{host.print_prefix}{line}")
    return False


@operation()
def verify(settings: Settings):
    """
    Check the running stack over HTTP; fail, with what to check, if any part does not work.

    + settings: the validated pgmon settings

    **Example:**

    .. code:: python

        verify(name="Verify pgmon over HTTP", settings=settings)
    """
    # Runs at execution only: before that, the containers may not exist yet.
    if not host.state.is_executing:
        return
    findings = wait_for_stack(settings, HostHTTP(host))
    failed = [f for f in findings if not f.ok]
    lines = report(findings)
    if not failed:
        for line in lines:
            host.log(f"pgmon: {line}")
        return
    summary = f"pgmon verification failed for {', '.join(f.subject for f in failed)}; everything else keeps running:"
    yield FunctionCommand(_fail, ([summary] + lines,), {})


@deploy("Verify the pgmon stack")
def verify_stack(settings: Settings):
    verify(name="Verify pgmon over HTTP", settings=settings)
