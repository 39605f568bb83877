"""Fixtures for the end-to-end suite: the lab machine, capture servers, and a pgmon project."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .capture import CaptureServer
from .lab import DATABASES, DOCKER_BRIDGE_IP, REPO, Lab, Project

BASE_DIR = "/opt/pgmon-e2e"
COMPOSE_PROJECT = "pgmon-e2e"
PROMETHEUS_PORT, ALERTMANAGER_PORT, GRAFANA_PORT = 19090, 19093, 13000
SCRAPE_SECONDS = 2
EVALUATION_SECONDS = 2
POSTGRES_DOWN_FOR = "4s"
GROUP_WAIT = "1s"


@pytest.fixture(scope="session")
def lab():
    machine = Lab()
    machine.up()
    yield machine
    machine.down()


@pytest.fixture(scope="session")
def discord(lab):
    server = CaptureServer("discord", DOCKER_BRIDGE_IP, f"4242/{secrets.token_hex(16)}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def telegram(lab):
    server = CaptureServer("telegram", DOCKER_BRIDGE_IP, f"4242:{secrets.token_hex(16)}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def dashboard_server():
    """Serves tests/fixtures at grafana.com's download path, on loopback, for the controller's download."""

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path):
            if path.startswith("/api/dashboards/9628/revisions/"):
                return str(REPO / "tests/fixtures/dashboard-9628.json")
            return "/nonexistent"

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(REPO)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "compose", "-p", COMPOSE_PROJECT, *args], cwd="/", text=True,
                          capture_output=True, check=check)


class Deployment:
    """A pgmon project in a folder (inventory.py + group_data/), run through pyinfra over SSH."""

    def __init__(self, lab: Lab, directory: Path, discord: CaptureServer, telegram: CaptureServer, dashboard_url: str):
        self.lab = lab
        self.discord, self.telegram = discord, telegram
        self.dashboard_url = dashboard_url
        self.secrets = {
            "PGMON_E2E_DISCORD_URL": f"http://host.docker.internal:{discord.port}/api/webhooks/{discord._server.secret}",
            "PGMON_E2E_TELEGRAM_TOKEN": telegram._server.secret,
            "PGMON_E2E_TELEGRAM_CHAT": "-100987654321",
            "PGMON_E2E_GRAFANA_PASSWORD": "gr@fana:" + secrets.token_hex(8) + "'\"#%",
        }
        for db in DATABASES:
            self.secrets[self.password_env(db.name)] = db.password
        self.project = Project(directory, self.secrets)
        self.outputs: list[str] = []

    @staticmethod
    def password_env(name: str) -> str:
        return f"PGMON_E2E_{name.upper()}_PASSWORD"

    def group_data(self, names: list[str]) -> dict:
        databases = [
            {"name": db.name, "host": "host.docker.internal", "port": db.port, "dbname": db.dbname,
             "user": db.user, "password_env": self.password_env(db.name),
             "sslmode": "disable" if db.name == "billing" else "require"}
            for name in names for db in DATABASES if db.name == name
        ]
        return {
            "pgmon_databases": databases,
            "pgmon_discord": {"webhook_url_env": "PGMON_E2E_DISCORD_URL"},
            "pgmon_telegram": {"bot_token_env": "PGMON_E2E_TELEGRAM_TOKEN", "chat_id_env": "PGMON_E2E_TELEGRAM_CHAT",
                               "api_url": f"http://host.docker.internal:{self.telegram.port}"},
            "pgmon_grafana_admin_password_env": "PGMON_E2E_GRAFANA_PASSWORD",
            "pgmon_base_dir": BASE_DIR,
            "pgmon_project": COMPOSE_PROJECT,
            "pgmon_prometheus_port": PROMETHEUS_PORT,
            "pgmon_alertmanager_port": ALERTMANAGER_PORT,
            "pgmon_grafana_bind_address": "127.0.0.1",
            "pgmon_grafana_port": GRAFANA_PORT,
            "pgmon_scrape_interval_seconds": SCRAPE_SECONDS,
            "pgmon_evaluation_interval_seconds": EVALUATION_SECONDS,
            "pgmon_alert_timing": {"postgres_down_for": POSTGRES_DOWN_FOR, "group_wait": GROUP_WAIT,
                                   "group_interval": "5s", "repeat_interval": "1h"},
            "pgmon_dashboard_9628": {"url": self.dashboard_url + "/api/dashboards/9628/revisions/{revision}/download"},
            "pgmon_verify_timeout_seconds": 120,
        }

    def configure(self, names: list[str]) -> None:
        self.project.write(self.lab.inventory_source(), self.group_data(names))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = self.project.pyinfra(*args)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def containers(self) -> dict[str, str]:
        """service -> container id, for the project's containers."""
        out = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={COMPOSE_PROJECT}",
             "--format", '{{.Label "com.docker.compose.service"}} {{.ID}}'],
            text=True, capture_output=True, check=True).stdout
        return dict(line.split() for line in out.splitlines())

    def host_fingerprint(self) -> dict:
        """Every file under base_dir (content, mode, owner) and every container id."""
        files = {}
        base = Path(BASE_DIR)
        if base.exists():
            for path in sorted(base.rglob("*")):
                st = path.lstat()
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
                files[str(path.relative_to(base))] = (digest, st.st_mode, st.st_uid, st.st_gid)
        return {"files": files, "containers": self.containers()}

    def teardown(self) -> None:
        compose("down", "--volumes", "--remove-orphans", check=False)
        subprocess.run(["rm", "-rf", BASE_DIR], check=True)


@pytest.fixture(scope="module")
def deployment(lab, discord, telegram, dashboard_server, tmp_path_factory):
    deployment = Deployment(lab, tmp_path_factory.mktemp("project"), discord, telegram, dashboard_server)
    deployment.teardown()  # a previous interrupted run must not make this one pass
    yield deployment
    deployment.teardown()


def prometheus_query(query: str) -> list[dict]:
    import requests

    response = requests.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]



