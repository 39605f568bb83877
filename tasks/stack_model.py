"""The stack's vocabulary: the files pgmon manages, who owns them, the services and their ports.

Every other module speaks in these terms, so this one imports nothing else of pgmon.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# What the deploy reads at run time is package data (pyproject.toml): installed, pgmon/_templates and
# pgmon/_files inside the package; in a checkout (this folder imported as ``tasks``, or as ``pgmon`` by an
# editable install) the repository's templates/ and files/, the folders those two names map to.
PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = (PACKAGE_DIR / "_templates").is_dir()
TEMPLATES_DIR = PACKAGE_DIR / "_templates" if _INSTALLED else PACKAGE_DIR.parent / "templates"
FILES_DIR = PACKAGE_DIR / "_files" if _INSTALLED else PACKAGE_DIR.parent / "files"
DASHBOARDS_DIR = FILES_DIR / "grafana" / "dashboards"

ROOT = 0
NOBODY = 65534  # the user of the prom/* and postgres-exporter images
GRAFANA_UID, GRAFANA_GID = 472, 0  # the grafana/grafana image runs as 472:0
# The containers run as uids of pgmon's own, not the images' 65534: that is the host's nobody, which could then
# read every secret file and, as the containers' processes' user, their memory and /proc/<pid>/root. Debian
# reserves 65000-65533 for no account (Policy 9.2.2), so no host user shares them.
NODE_EXPORTER_UID = 65532  # owns nothing on the host, so it reads only what is world-readable
PROMETHEUS_UID = 65531
ALERTMANAGER_UID = 65530
EXPORTER_UID = 65529

# The ports each component listens on inside its container (the images' defaults).
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
ALERTMANAGER_GOSSIP_PORT = (
    9094  # inside the container; an HA group's members publish it (settings/cluster.py)
)
GRAFANA_PORT = 3000
EXPORTER_PORT = 9187
NODE_EXPORTER_PORT = 9100

NODE_EXPORTER_SERVICE = "node-exporter"
MANIFEST = ".pgmon-manifest"  # every path pgmon wrote under base_dir: the only ones it ever prunes
STAGE_PREFIX = ".pgmon-stage."  # step 2's staging folder under base_dir, left behind only by an interrupted run

# The data volumes, by the component whose data each holds (also the backup archive's folder names). The
# compose file declares them; uninstall.py keeps or deletes them; backup.py copies them.
DATA_VOLUMES = {
    "prometheus": "prometheus-data",
    "alertmanager": "alertmanager-data",
    "grafana": "grafana-data",
}

# The data volumes' owners: Docker fills a new volume from the image, as 65534 (compose_up hands it over).
VOLUME_OWNERS = {"prometheus": PROMETHEUS_UID, "alertmanager": ALERTMANAGER_UID}


def volume_owners_command(project: str) -> str:
    """Give each data volume's files to the uid its container runs as (a new volume, one restored or from a
    pgmon that ran the images' 65534); ``chown -h`` and ``find`` never follow a link."""
    return " && ".join(
        f"m=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {shlex.quote(volume_name(project, DATA_VOLUMES[c]))})"
        f' && find "$m" \\( ! -user {uid} -o ! -group {uid} \\) -exec chown -h {uid}:{uid} {{}} +'
        for c, uid in VOLUME_OWNERS.items()
    )


# Grafana's TLS files (tasks/grafana_tls.py): a folder under base_dir, mounted where Grafana reads it.
GRAFANA_TLS_DIR = "grafana/tls"
GRAFANA_TLS_MOUNT = "/etc/grafana/tls"
GRAFANA_USER_CERT, GRAFANA_USER_KEY = "grafana.crt", "grafana.key"
GRAFANA_SELF_SIGNED_CERT, GRAFANA_SELF_SIGNED_KEY = "self-signed.crt", "self-signed.key"

# The label of the fire drill's alerts (tasks/drill.py), which Alertmanager routes and inhibits apart.
DRILL_LABEL = "pgmon_drill"

# What must follow a change of a file; planned by tasks/stack_files.py, done by tasks/stack_containers.py.
RELOAD_PROMETHEUS = "reload:prometheus"
RELOAD_ALERTMANAGER = "reload:alertmanager"
RESTART_GRAFANA = "restart:grafana"
RESET_GRAFANA_PASSWORD = "reset-password:grafana"


def restart_action(service: str) -> str:
    return f"restart:{service}"


def action_service(action: str) -> str:
    """The compose service an action acts on: ``reload:prometheus`` -> ``prometheus``."""
    return action.partition(":")[2]


def exporter_service(database_name: str) -> str:
    """The compose service of a database's postgres_exporter."""
    return f"exporter-{database_name}"


def tenants_service(server_name: str) -> str:
    """The compose service that probes every database found on a discovered server (settings/discovery.py)."""
    return f"tenants-{server_name}"


def light_service(server_name: str) -> str:
    """The compose service that probes a discovered server's databases matching its ``light`` patterns."""
    return f"light-{server_name}"


# The lists of databases found on discovered servers: written by each server's own exporter container,
# read by Prometheus as file discovery (render/discovery.py).
DISCOVERED_DIR = "discovered"
DISCOVERED_MOUNT = "/discovered"


def discovered_file(server_name: str) -> str:
    """The discovery list of a server, as Prometheus and the writing exporter see it."""
    return f"{DISCOVERED_MOUNT}/{server_name}.json"


def container_name(project: str, service: str) -> str:
    """The container Compose runs for ``service``: compose files set ``container_name`` to this."""
    return f"{project}-{service}"


def volume_name(project: str, volume: str) -> str:
    """The name Compose gives a project's volume on the host."""
    return f"{project}_{volume}"


def grafana_certificate_files(user_certificate: bool) -> tuple[str, str]:
    """(certificate, key) file names under GRAFANA_TLS_DIR for the certificate in use."""
    if user_certificate:
        return GRAFANA_USER_CERT, GRAFANA_USER_KEY
    return GRAFANA_SELF_SIGNED_CERT, GRAFANA_SELF_SIGNED_KEY


def compose_command(base_dir: str | None, project: str, arguments: str) -> str:
    """``docker compose`` on pgmon's file and project only: a stray compose.yaml, a .env with COMPOSE_FILE or
    COMPOSE_PROJECT_NAME in base_dir, or such variables in the SSH session cannot redirect it (and then
    --remove-orphans remove pgmon's containers). With no ``base_dir`` (its compose file is gone), Compose
    finds the project by its containers' labels, from ``/``: in the SSH user's folder (or a parent) it would
    read a compose.yaml or .env found there."""
    compose = "env -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME -u COMPOSE_PROFILES docker compose"
    if base_dir is None:
        return f"cd / && {compose} --project-name {shlex.quote(project)} --env-file /dev/null {arguments}"
    base = shlex.quote(base_dir)
    return (
        f"cd {base} && {compose} "
        f"--project-name {shlex.quote(project)} --file {base}/docker-compose.yml --project-directory {base} "
        f"--env-file /dev/null {arguments}"
    )


# Plain scalars that some reader would take for a number, a boolean or null: YAML 1.1 (PyYAML, Go's yaml.v2
# in Prometheus and Alertmanager) and YAML 1.2 (Compose) disagree on '059', '1e3', '0o17', '0b1', '1_000'...
_NOT_PLAIN = re.compile(
    r"[-+.]?[0-9]|[-+]?\.(inf|nan)$|(y|yes|n|no|true|false|on|off|null|~)$", re.IGNORECASE
)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True  # a value used twice is written twice, not as an anchor a reader may not take

    def represent_str(self, data: str):
        style = "'" if _NOT_PLAIN.match(data) else None
        return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _Dumper.represent_str)


def yaml_bytes(data) -> bytes:
    """YAML every reader reads back to the same values: strings that look like anything else are quoted."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096).encode()


@dataclass(frozen=True)
class ManagedFile:
    """A file pgmon owns under base_dir. ``on_change`` names what must follow an update."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    uid: int = ROOT
    gid: int = ROOT
    secret: bool = False
    on_change: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class ManagedDir:
    path: str
    mode: int = 0o755
    uid: int = ROOT
    gid: int = ROOT


@dataclass(frozen=True)
class ConfigCheck:
    """A component's own checker, run on a candidate copy of its directory before any file of it is replaced.

    The candidate is mounted where the component reads its configuration, so every path in it resolves as
    it will in the running container.
    """

    directory: str  # relative to base_dir: "prometheus"
    image: str  # the image that will read the files
    mount: str  # where the container reads the directory: "/etc/prometheus"
    command: tuple[
        str, ...
    ]  # the checker and its arguments: ("/bin/promtool", "check", "config", ...)
    user: int  # the uid the component runs as, so the checker reads what the component will


@dataclass(frozen=True)
class StackFiles:
    directories: tuple[ManagedDir, ...]
    files: tuple[ManagedFile, ...]
    service_revisions: dict[str, str]  # compose service -> its pgmon.revision label
    config_checks: tuple[ConfigCheck, ...] = ()
