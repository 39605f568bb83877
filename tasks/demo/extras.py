"""The demo's extras, rendered: its PostgreSQL, workload and alert sink as a Compose project of their own, with
their scripts and secrets under /opt/pgmon-demo-extras (pure: no pyinfra, no I/O on the host)."""

from __future__ import annotations

import hashlib
import json

from ..stack_model import MANIFEST, TEMPLATES_DIR, ManagedDir, ManagedFile, StackFiles, yaml_bytes
from .config import (
    EXTRAS_DIR,
    EXTRAS_PROJECT,
    METRICS_NETWORK,
    MONITORING_PASSWORD,
    POSTGRES,
    POSTGRES_UID,
    POSTGRES_VOLUME,
    SECRET_NAMES,
    SECRETS_DIR,
    SINK,
    SINK_PORT,
    SINK_UID,
    WORKLOAD,
    WORKLOAD_PASSWORD,
)


def _template(path: str) -> bytes:
    return (TEMPLATES_DIR / "demo" / path).read_bytes()


def render_extras(secrets: dict[str, str], images: dict[str, str]) -> StackFiles:
    """The extras' folder: their compose file, scripts and secrets, with owners and modes.

    Example:

    .. code:: python

        extras = render_extras(read_demo_secrets(host), demo_images(host.data.dict()))
        [f.path for f in extras.files]  # ["postgres/postgres.sh", ..., "docker-compose.yml", ...]
    """
    private = dict(mode=0o400, uid=POSTGRES_UID, gid=POSTGRES_UID, secret=True)
    mounted = {
        "postgres": [
            ManagedFile("postgres/postgres.sh", _template("postgres.sh")),
            ManagedFile(
                f"postgres/{MONITORING_PASSWORD}", secrets[MONITORING_PASSWORD].encode(), **private
            ),
            ManagedFile(
                f"postgres/{WORKLOAD_PASSWORD}", secrets[WORKLOAD_PASSWORD].encode(), **private
            ),
        ],
        "workload": [
            ManagedFile("workload/workload.sh", _template("workload.sh")),
            # libpq reads it only when no one else may (0400); the workload runs as its owner.
            ManagedFile(
                "workload/pgpass",
                f"{POSTGRES}:5432:demo:demo_app:{secrets[WORKLOAD_PASSWORD]}\n".encode(),
                **private,
            ),
        ],
        "alert-sink": [
            ManagedFile(
                f"alert-sink/cgi-bin/{name}", _template(f"alert-sink/cgi-bin/{name}"), 0o755
            )
            for name in ("receive", "index.cgi", "messages")
        ],
    }
    services = _services(images)
    for service, definition in services.items():
        # A changed script or password recreates the container that reads it, like a changed definition.
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
        for managed in mounted[service]:
            digest.update(managed.sha256.encode())
        definition["labels"] = {"pgmon.demo": "true", "pgmon.revision": digest.hexdigest()[:16]}
    compose = {
        "name": EXTRAS_PROJECT,
        "services": services,
        "networks": {"metrics": {"name": METRICS_NETWORK, "external": True}},
        "volumes": {POSTGRES_VOLUME: {}},
    }
    directories = [
        ManagedDir("."),
        ManagedDir(SECRETS_DIR, 0o700),
        ManagedDir("postgres"),
        ManagedDir("workload"),
        ManagedDir("alert-sink"),
        ManagedDir("alert-sink/cgi-bin"),
    ]
    files = [
        ManagedFile("docker-compose.yml", yaml_bytes(compose)),
        *(
            ManagedFile(f"{SECRETS_DIR}/{name}", secrets[name].encode(), mode=0o600, secret=True)
            for name in SECRET_NAMES
        ),
        *(managed for group in mounted.values() for managed in group),
    ]
    paths = sorted({d.path for d in directories} | {f.path for f in files} | {MANIFEST})
    files.append(ManagedFile(MANIFEST, ("\n".join(paths) + "\n").encode()))
    revisions = {name: svc["labels"]["pgmon.revision"] for name, svc in services.items()}
    return StackFiles(tuple(directories), tuple(files), revisions)


def _services(images: dict[str, str]) -> dict[str, dict]:
    def mount(directory: str, target: str) -> str:
        return f"{EXTRAS_DIR}/{directory}:{target}:ro"

    postgres_user = f"{POSTGRES_UID}:{POSTGRES_UID}"
    return {
        "postgres": {
            "image": images["postgres"],
            "container_name": POSTGRES,
            "restart": "unless-stopped",
            # Its own start script rather than the image's entrypoint: the same on the official image and
            # on the test suite's, and no password in the container's environment.
            "user": postgres_user,
            "entrypoint": ["/bin/sh", "/demo/postgres.sh"],
            "environment": {"PGDATA": "/var/lib/postgresql/data"},
            "stop_signal": "SIGINT",  # PostgreSQL's fast shutdown, as the official image stops it
            "volumes": [f"{POSTGRES_VOLUME}:/var/lib/postgresql/data", mount("postgres", "/demo")],
            "networks": ["metrics"],
        },
        "workload": {
            "image": images["postgres"],
            "container_name": WORKLOAD,
            "restart": "unless-stopped",
            "init": True,  # a shell as PID 1 would ignore docker stop's SIGTERM
            "user": postgres_user,
            "entrypoint": ["/bin/sh", "/demo/workload.sh"],
            "environment": {
                "PGHOST": POSTGRES,
                "PGDATABASE": "demo",
                "PGUSER": "demo_app",
                "PGPASSFILE": "/demo/pgpass",
                "PGAPPNAME": WORKLOAD,
                "PGCONNECT_TIMEOUT": "5",
            },
            "volumes": [mount("workload", "/demo")],
            "networks": ["metrics"],
        },
        "alert-sink": {
            "image": images["busybox"],
            "container_name": SINK,
            "restart": "unless-stopped",
            "init": True,
            "user": f"{SINK_UID}:{SINK_UID}",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "ports": [f"127.0.0.1:{SINK_PORT}:8080"],
            "volumes": [mount("alert-sink", "/www")],
            "networks": ["metrics"],
        },
    }
