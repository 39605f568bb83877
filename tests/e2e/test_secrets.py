"""Secrets at their edges: odd names and passwords PostgreSQL accepts work, and no secret reaches a container's
log, `docker inspect`, pyinfra's output (with -vvv --diff), or any container but the one it is for."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tasks.grafana_key import VOLUME_CHECK_FILE, key_check

from .lab import DATABASES, Deployment, LabDatabase, Site, api_auth, wait_until

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-secrets",
    project="pgmon-secrets",
    prometheus_port=21290,
    alertmanager_port=21293,
    grafana_port=21200,
)
# A database name and a role with spaces, and a long password with quotes, backslashes, spaces and non-ASCII.
ODD = LabDatabase(
    "odd", 5432, "odd db: 'x'", "odd user", "p w\\'\"é€ :@#%$HOME " + "x" * 100, sslmode="disable"
)
OWNERS = {  # secret file under base_dir -> the only service that may read it
    "exporters/odd/pgpass": "exporter-odd",
    "exporters/shop/pgpass": "exporter-shop",
    "alertmanager/secrets/telegram_chat_0": "alertmanager",
    "alertmanager/secrets/discord_webhook_url": "alertmanager",
    "alertmanager/secrets/telegram_bot_token": "alertmanager",
    "grafana/secrets/admin_password": "grafana",
    "grafana/secrets/secret_key": "grafana",
    "prometheus/secrets/api_password": "prometheus",
    "alertmanager/secrets/api_password": "alertmanager",
    "grafana/secrets/api_password": "grafana",
}


@pytest.fixture(scope="module")
def odd(lab, new_deployment):
    lab.psql(
        5432,
        "postgres",
        "SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS "
        "(SELECT FROM pg_roles WHERE rolname = :'role') \\gexec\n"
        "SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'pw') \\gexec\n"
        "SELECT format('GRANT pg_monitor TO %I', :'role') \\gexec\n"
        "SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = :'db') \\gexec\n",
        variables={"role": ODD.user, "pw": ODD.password, "db": ODD.dbname},
    )
    shop = next(db for db in DATABASES if db.name == "shop")
    with new_deployment("secrets", databases=(shop, ODD), site=SITE) as deployment:
        deployment.configure(["shop", "odd"])
        result = deployment.run("-vvv", "--diff")
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        yield deployment


def secret_values(deployment: Deployment) -> dict[str, str]:
    values = {n: v for n, v in deployment.secrets.items() if not n.endswith("_CHAT")}
    return {**values, "the APIs' password": api_auth(SITE.prometheus_port)[1]}


def container_pid(container: str) -> str:
    """The host's PID of the container's first process."""
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_odd_names_and_passwords_connect(odd):
    assert re.search(
        r"database odd +ok +pg_up 1 at host.docker.internal:5432/odd db: 'x'", odd.outputs[-1]
    )


def test_no_secret_in_logs_inspect_or_pyinfra_output(odd):
    odd.secrets[odd.password_env("odd")] = ODD.password[
        ::-1
    ]  # rotate: the exporter restarts, --diff prints
    changed = odd.run(
        "-vvv", "--diff"
    )  # refused by PostgreSQL now, so the exporter logs its failure
    assert "database odd" in changed.stdout + changed.stderr
    containers = odd.containers()
    logs = "".join(
        subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout
        + subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stderr
        for cid in containers.values()
    )
    inspect = subprocess.run(
        ["docker", "inspect", *containers.values()], capture_output=True, text=True, check=True
    ).stdout
    for name, value in {**secret_values(odd), "old": ODD.password}.items():
        for where, text in (
            ("docker logs", logs),
            ("docker inspect", inspect),
            *((f"pyinfra output {i}", output) for i, output in enumerate(odd.outputs)),
        ):
            assert value not in text, f"{name} in {where}"


def test_no_container_reads_another_ones_secret(odd):
    base = Path(SITE.base_dir)
    containers = odd.containers()
    mounts = {
        service: json.loads(
            subprocess.run(
                ["docker", "inspect", "-f", "{{json .Mounts}}", cid],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for service, cid in containers.items()
    }
    tried = 0
    for relative, owner in OWNERS.items():
        host_path = str(base / relative)
        assert Path(host_path).exists(), relative
        for service, cid in containers.items():
            for mount in mounts[service]:
                source = mount["Source"].rstrip("/") + "/"
                if not host_path.startswith(source):
                    continue
                inside = mount["Destination"].rstrip("/") + "/" + host_path[len(source) :]
                read = subprocess.run(
                    ["docker", "exec", cid, "cat", inside], capture_output=True, text=True
                )
                tried += 1
                if service == owner:
                    assert read.returncode == 0, (service, relative, read.stderr)
                else:
                    assert read.returncode != 0 and not read.stdout, f"{service} reads {relative}"
    # Every owner reads its own; node-exporter (the host's / mounted) tried every file and read none.
    assert tried >= len(OWNERS) * 2


def test_no_host_account_shares_a_containers_uid_or_reads_a_secret(odd):
    """The images' 65534 is the host's nobody, which could read every secret file that uid owned and, as the
    containers' user, their memory and /proc/<pid>/root. pgmon's containers run as uids no account has; a secret
    folder lets its owner open a file by name but not list it."""
    accounts = {
        line.split(":")[2]: line.split(":")[0]
        for line in Path("/etc/passwd").read_text().splitlines()
    }
    for service, cid in odd.containers().items():
        uid = str(Path(f"/proc/{container_pid(cid)}").stat().st_uid)
        assert uid not in accounts, f"{service} runs as the host's {accounts[uid]}"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for relative in OWNERS:
        read = subprocess.run(
            [*as_nobody, "cat", str(Path(SITE.base_dir) / relative)], capture_output=True
        )
        assert read.returncode != 0 and not read.stdout, relative
    for service, folder in (
        ("alertmanager", "/etc/alertmanager/secrets"),
        ("exporter-odd", "/etc/postgres_exporter"),
        ("grafana", "/etc/grafana/secrets"),
    ):
        listing = subprocess.run(
            ["docker", "exec", odd.containers()[service], "ls", folder], capture_output=True
        )
        assert listing.returncode != 0 and not listing.stdout, service


def test_no_local_account_deletes_history_or_silences_alerts(odd):
    """Prometheus and Alertmanager listen on the host's loopback and on Docker's bridges, which every local
    account reaches: without their password (api_auth.py) nobody could delete every series through the admin
    API or silence every alert. With it, the same calls work: the refusal is the password's doing."""
    containers = odd.containers()
    for service in ("prometheus", "alertmanager"):
        wait_until(
            f"{service}'s healthcheck, which logs in, to pass",
            lambda s=service: (
                subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Health.Status}}", containers[s]],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                == "healthy"
            ),
            90,
        )
    bridge = {
        service: subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                containers[service],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
        for service in ("prometheus", "alertmanager")
    }
    silence = json.dumps(
        {
            "matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "nobody",
            "comment": "all quiet",
        }
    )
    calls = [
        (
            f"127.0.0.1:{SITE.prometheus_port}",
            "POST",
            "/api/v1/admin/tsdb/delete_series?match[]=up",
            "",
        ),
        (f"{bridge['prometheus']}:9090", "POST", "/api/v1/admin/tsdb/clean_tombstones", ""),
        (f"127.0.0.1:{SITE.alertmanager_port}", "POST", "/api/v2/silences", silence),
        (f"{bridge['alertmanager']}:9093", "POST", "/api/v2/silences", silence),
    ]
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for address, method, path, body in calls:
        refused = subprocess.run(
            [
                *as_nobody,
                "/usr/bin/python3",
                "-c",
                REQUEST,
                f"http://{address}{path}",
                method,
                body,
            ],
            capture_output=True,
            text=True,
        )
        assert refused.stdout.strip() == "401", (address, path, refused.stdout, refused.stderr)
    port = {"prometheus": SITE.prometheus_port, "alertmanager": SITE.alertmanager_port}
    for service in ("prometheus", "alertmanager"):
        auth = api_auth(port[service])
        read = "/api/v1/query?query=up" if service == "prometheus" else "/api/v2/silences"
        assert (
            requests.get(
                f"http://127.0.0.1:{port[service]}{read}", auth=auth, timeout=10
            ).status_code
            == 200
        )
        assert (
            requests.get(f"http://127.0.0.1:{port[service]}{read}", timeout=10).status_code == 401
        )
    assert not requests.get(
        f"http://127.0.0.1:{SITE.alertmanager_port}/api/v2/silences",
        auth=api_auth(SITE.alertmanager_port),
        timeout=10,
    ).json(), "a silence was made"


# One HTTP call, run as another user: prints the status (or the error).
REQUEST = """
import sys, urllib.error, urllib.request
url, method, body = sys.argv[1:]
request = urllib.request.Request(url, method=method, data=body.encode() or None,
                                 headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def test_grafana_runs_with_the_deployments_secret_key_and_its_volume_records_which(odd):
    """Grafana's image turns GF_SECURITY_SECRET_KEY__FILE into GF_SECURITY_SECRET_KEY in its process (the stand-in's
    run.sh, as the official one); the key is nowhere else in the container's definition, and Grafana's volume holds
    the key's check, not the key, for the next run and any restore to compare."""
    key = odd.secrets["PGMON_E2E_GRAFANA_SECRET_KEY"]
    grafana = odd.containers()["grafana"]
    environ = Path(f"/proc/{container_pid(grafana)}/environ").read_bytes().split(b"\0")
    assert f"GF_SECURITY_SECRET_KEY={key}".encode() in environ
    volume = subprocess.run(
        ["docker", "volume", "inspect", "-f", "{{.Mountpoint}}", f"{SITE.project}_grafana-data"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    recorded = Path(volume, VOLUME_CHECK_FILE).read_text().strip()
    assert recorded == key_check(key) and key not in recorded
