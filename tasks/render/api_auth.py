"""Prometheus's and Alertmanager's HTTP APIs behind basic auth (their ``--web.config.file``).

Both answer on the host's loopback and on Docker's bridges, which every local account reaches: without a
password any of them (www-data, a CI runner) could delete Prometheus's history through the admin API that
backup.py uses, or silence every alert. One user, ``pgmon``, with a password derived from Grafana's admin
password (HMAC-SHA256): no further secret to export, and whoever holds Grafana's password administers this
monitoring already. The bcrypt hash's salt is derived too, so an unchanged password renders the same file
and a re-run changes nothing.

The password is always presented from a file, never on a command line (which every local account reads in
/proc): by Prometheus to Alertmanager and to itself when it scrapes (``password_file``), by Grafana's data
source (``$__file{}``), by promtool and amtool in the healthchecks, silence.py and alert_delivery.py
(``--http.config.file``), by the backup's snapshot call (the request written to nc's stdin), and by
verification, from the controller, which derives it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shlex

import bcrypt

from ..settings import Settings
from ..stack_model import ALERTMANAGER_PORT, PROMETHEUS_PORT, container_name, yaml_bytes

API_USER = "pgmon"
# In each component's secrets folder (0100, its own uid): the password, the hash it checks, the client's file.
PASSWORD_FILE, WEB_CONFIG_FILE, CLIENT_CONFIG_FILE = "api_password", "web.yml", "api_client.yml"
# Prometheus and Alertmanager cache a verified password, so the cost is paid once, not per request.
_BCRYPT_COST = 10
_BCRYPT_ALPHABET = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)


def container_path(component: str, name: str) -> str:
    """Where ``component``'s container reads one of these files: its configuration folder's secrets/."""
    return f"/etc/{component}/secrets/{name}"


def api_password(grafana_admin_password: str) -> str:
    """The APIs' password: 43 URL-safe characters, a one-way function of Grafana's admin password."""
    digest = hmac.new(
        grafana_admin_password.encode(), b"pgmon web API password", hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def api_credentials(settings: Settings) -> tuple[str, str]:
    return API_USER, api_password(settings.grafana_admin_password.get_secret_value())


def password_hash(password: str) -> str:
    """bcrypt, as the exporter toolkit's ``basic_auth_users`` takes it, with a salt derived from the password."""
    raw_salt = hashlib.sha256(b"pgmon web API salt\0" + password.encode()).digest()[:16]
    salt = base64.b64encode(raw_salt).decode()[:22].translate(_BCRYPT_ALPHABET)
    return bcrypt.hashpw(password.encode(), f"$2b${_BCRYPT_COST:02d}${salt}".encode()).decode()


def render_web_config(password: str) -> bytes:
    return yaml_bytes({"basic_auth_users": {API_USER: password_hash(password)}})


def render_client_config(password_path: str) -> bytes:
    """promtool's and amtool's ``--http.config.file``: the user, and where the password is read."""
    return yaml_bytes({"basic_auth": {"username": API_USER, "password_file": password_path}})


def amtool_command() -> list[str]:
    """amtool in the Alertmanager container, on its own loopback, with the password from its file."""
    return [
        "amtool",
        f"--alertmanager.url=http://127.0.0.1:{ALERTMANAGER_PORT}",
        f"--http.config.file={container_path('alertmanager', CLIENT_CONFIG_FILE)}",
    ]


def api_request_command(project: str, component: str, method: str, path: str) -> str:
    """Shell (on the host) that sends one request to ``component``'s API from inside its container and prints
    the whole answer, status line and headers included. Every step there is a shell builtin or reads a file
    (printf, cat, base64, nc): the password is on no command line, and the host needs no HTTP client."""
    port = {"prometheus": PROMETHEUS_PORT, "alertmanager": ALERTMANAGER_PORT}[component]
    password = container_path(component, PASSWORD_FILE)
    credentials = f"\"$(printf '{API_USER}:%s' \"$(cat {password})\" | base64 | tr -d '\\n')\""
    head = (
        f"{method} {path} HTTP/1.0\\r\\nAuthorization: Basic %s\\r\\nContent-Length: 0\\r\\n\\r\\n"
    )
    request = f"printf '{head}' {credentials} | nc 127.0.0.1 {port}"
    return f"docker exec {shlex.quote(container_name(project, component))} sh -c {shlex.quote(request)}"


def answer_body(answer: str) -> tuple[int, str]:
    """(HTTP status, body) of what ``api_request_command`` printed; status 0 if it is no HTTP answer."""
    head, _, body = re.sub(r"\r\n", "\n", answer).partition("\n\n")
    fields = head.split(" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    return status, body
