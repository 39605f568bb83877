"""Grafana's ``secret_key``: the key that encrypts what Grafana stores (the data source's password, whatever a
user adds by hand), one per deployment, read from the controller's environment like every other secret.

Grafana ships a public default key: an archive of a Grafana that keeps it (``backup.py``) holds credentials
anyone can decrypt. Grafana cannot take a new key for data it has written (the key encrypts its data keys), so
pgmon records which key a Grafana data volume was made with: a check value (PBKDF2 of the key, not the key) in
the volume itself, where backups carry it to a new host. A run whose key is not the recorded one, or a key for
data made with the default, is refused before anything changes (``refuse_other_grafana_key``).
"""

from __future__ import annotations

import functools
import hashlib
import shlex
from dataclasses import dataclass

from pyinfra import host

from .host_facts import HostFact, Lines
from .settings import DeployError, Settings
from .stack_model import DATA_VOLUMES, container_name, volume_name

SECRET_KEY_FILE = "grafana/secrets/secret_key"  # under base_dir; GF_SECURITY_SECRET_KEY__FILE
CHECK_FILE = "grafana/secrets/secret_key.check"  # under base_dir, copied into a new volume
VOLUME_CHECK_FILE = ".pgmon-secret-key"  # in Grafana's data volume, beside grafana.db
_ITERATIONS = 200_000


@functools.lru_cache(maxsize=8)  # the render and the refusal ask for the same key in one run
def key_check(secret_key: str) -> str:
    """What a volume records of its key: enough to tell another key, slow to guess the key from."""
    digest = hashlib.pbkdf2_hmac(
        "sha256", secret_key.encode(), b"pgmon grafana secret_key", _ITERATIONS
    )
    return f"pbkdf2-sha256:{_ITERATIONS}:{digest.hex()}"


@dataclass(frozen=True)
class GrafanaVolume:
    has_data: bool  # Grafana has written its database there
    check: (
        str | None
    )  # the key check recorded there; None: none (made with the default key, or new)


def grafana_volume_command(base_dir: str, project: str) -> str:
    volume = shlex.quote(volume_name(project, DATA_VOLUMES["grafana"]))
    return (
        "if command -v docker >/dev/null 2>&1 && "
        f"m=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {volume} 2>/dev/null); then "
        'if [ -e "$m/grafana.db" ]; then echo "grafana-volume data"; else echo "grafana-volume empty"; fi; '
        f'[ ! -f "$m/{VOLUME_CHECK_FILE}" ] || sed -n "1s/^/grafana-key /p" "$m/{VOLUME_CHECK_FILE}"; fi'
    )


def parse_grafana_volume(lines: Lines) -> GrafanaVolume | None:
    """``grafana-volume data|empty`` and ``grafana-key CHECK`` -> the volume; None: no volume."""
    found = dict(lines)
    if "grafana-volume" not in found:
        return None
    return GrafanaVolume(found["grafana-volume"] == "data", found.get("grafana-key") or None)


GRAFANA_VOLUME = HostFact(
    "grafana_volume",
    ("grafana-volume", "grafana-key"),
    grafana_volume_command,
    parse_grafana_volume,
)


def refuse_other_grafana_key(settings: Settings, volume: GrafanaVolume | None) -> None:
    """Refuse, before any change, a key Grafana's data on the host was not made with."""
    cfg = settings.config
    key = settings.grafana_secret_key
    if volume is None or (not volume.has_data and volume.check is None):
        return  # a new Grafana: it starts with this run's key
    if volume.check is None and key is None:
        return  # made with the default, kept on purpose
    name = volume_name(cfg.project, DATA_VOLUMES["grafana"])
    unchanged = "Nothing was changed"
    if volume.check is None:
        remove = f"docker rm -f {container_name(cfg.project, 'grafana')} && docker volume rm {name}"
        raise DeployError(
            f"pgmon_grafana_secret_key_env: Grafana's data on {host.name} (volume {name}) was made with "
            "Grafana's public default secret_key, and Grafana cannot take another key for data it has "
            "written. Either keep the default for this host: pgmon_grafana_secret_key_env = None (its "
            "backups then hold credentials a public key decrypts); or start Grafana's data afresh with the "
            f"key: `{remove}` on the host, then deploy (pgmon provisions its data source and dashboards "
            "again; Grafana users, preferences and dashboards made by hand are lost). "
            f"{unchanged}"
        )
    if key is None:
        raise DeployError(
            f"pgmon_grafana_secret_key_env: is None, but Grafana's data on {host.name} (volume {name}) was "
            "made with a secret_key of its own, which Grafana's default cannot read: name the variable "
            f"holding that key and export it. {unchanged}"
        )
    if key_check(key.get_secret_value()) != volume.check:
        raise DeployError(
            f"pgmon_grafana_secret_key_env: {cfg.grafana_secret_key_env} holds another key than the one "
            f"Grafana's data on {host.name} (volume {name}) was made with, and Grafana cannot change the "
            "key of data it has written: export the key this host's deploys used (or the one of the "
            f"deployment its backup came from). {unchanged}"
        )


def record_key_command(base_dir: str, project: str) -> str:
    """Shell that records the key check in Grafana's volume while it is new: after ``up --no-start`` made it,
    before Grafana first writes there. A volume with data or a check already is left as it is."""
    volume = shlex.quote(volume_name(project, DATA_VOLUMES["grafana"]))
    check = shlex.quote(f"{base_dir}/{CHECK_FILE}")
    return (
        f"m=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {volume}) && "
        f'{{ [ -e "$m/grafana.db" ] || [ -e "$m/{VOLUME_CHECK_FILE}" ] || cp {check} "$m/{VOLUME_CHECK_FILE}"; }}'
    )
