"""Moving pgmon to a new server: ``backup.py`` copies the stack's data to the controller, ``restore.py`` puts it on
another host, then the deploy starts the stack there on it (README, "Moving to a new server").

    pyinfra inventory.py backup.py                                 # -> ~/pgmon-backups/pgmon-<host>-<UTC>.tar.gz
    pyinfra new-inventory.py restore.py --data pgmon_restore_from=~/pgmon-backups/pgmon-<host>-<UTC>.tar.gz
    pyinfra new-inventory.py deploy.py

The archive holds a consistent copy of each data volume, and nothing else (the configuration is the deploy's,
from group_data; the secrets stay in the controller's environment):

- ``prometheus/``: a snapshot of the TSDB made by Prometheus itself (``POST /api/v1/admin/tsdb/snapshot``:
  hard links to its blocks and the head written out), so it is consistent while Prometheus keeps scraping;
- ``grafana/``: Grafana's data folder, copied while Grafana is stopped for those seconds (its SQLite database
  is then at rest);
- ``alertmanager/``: silences and the notification log (Alertmanager replaces those files whole).

The archive streams from the host's stdout into a file only the controller's user can read (0600): Grafana's
database holds the admin password's hash, and the credentials Grafana stores (encrypted with its
``secret_key``, which the archive does not hold). The archives go to ``~/pgmon-backups`` by default, outside
the git repository pyinfra usually runs in; a folder the backup makes holds a ``.gitignore`` of ``*`` all the
same, for a ``pgmon_backup_dir`` inside one. On the host nothing is left behind (a 0700 root folder in /var/tmp
while it runs). The download is kept only once ``check_archive`` finds it whole. ``restore.py`` checks the archive
the same way (its exact format, only plain files and folders, every part, a Prometheus block and Grafana's
database), installs Docker if the host has none (step 1 of the deploy), then creates the project's volumes from
the archive; it refuses a host that already has them, and removes the volumes it made if it fails partway.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import tarfile
import zlib
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, deploy, operation

from .docker_engine import install_docker
from .host_lock import claim_host
from .host_state import read_host_state
from .pyinfra_internals import CHUNK, start_process
from .render.api_auth import api_request_command
from .settings import DeployError, HostConfig
from .stack_containers import refuse_foreign_project
from .stack_model import DATA_VOLUMES, container_name, volume_name
from .uninstall import leftovers

FORMAT = "pgmon-backup 1"
METADATA = "pgmon-backup.json"


class ArchiveError(Exception):
    """An archive that is not one backup.py would write; the message says what is wrong with it."""


def check_archive(path: str | Path) -> dict:
    """The archive's metadata, once it is exactly what ``backup_script`` writes: its ``format`` is FORMAT; every
    member is a plain file or folder in a part or the metadata (no link, device, absolute or ``..`` name: root
    restores it); every part is there, Prometheus's with a block of its snapshot, Grafana's with its database.
    The backup checks its download with it, the restore its input, so neither passes an empty part."""
    metadata, names = None, set()
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                part, _, rest = member.name.partition("/")
                if member.name == METADATA and member.isfile():
                    try:
                        metadata = json.load(archive.extractfile(member))
                    except ValueError:
                        raise ArchiveError(f"its {METADATA} is not JSON") from None
                elif part not in DATA_VOLUMES or ".." in rest.split("/"):
                    raise ArchiveError(f"it holds {member.name!r}, which no pgmon backup has")
                elif not (member.isfile() or member.isdir()):
                    raise ArchiveError(
                        f"{member.name!r} in it is a link or a special file; a pgmon backup has "
                        "only files and folders"
                    )
                names.add(member.name + ("/" if member.isdir() else ""))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ArchiveError(f"it is not a readable tar.gz ({error})") from None
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != FORMAT:
        raise ArchiveError(
            f"its {METADATA} says format {found!r}; this pgmon reads {FORMAT!r}"
            if metadata is not None
            else f"it has no {METADATA}: backup.py did not write it"
        )
    for part in DATA_VOLUMES:
        if f"{part}/" not in names:
            raise ArchiveError(f"it has no {part}/")
    if not any(re.fullmatch(r"prometheus/[^/]+/meta\.json", name) for name in names):
        raise ArchiveError("its prometheus/ holds no block: Prometheus's snapshot was empty")
    if "grafana/grafana.db" not in names:
        raise ArchiveError("its grafana/ holds no grafana.db")
    return metadata


SNAPSHOT_PATH = "/api/v1/admin/tsdb/snapshot"


def backup_script(project: str, metadata: dict) -> str:
    """Shell (root) that writes the archive (tar.gz) on stdout; any failure exits non-zero with a line on stderr."""
    q = shlex.quote
    prometheus, grafana = container_name(project, "prometheus"), container_name(project, "grafana")
    mountpoints = [
        f"{part}=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {q(volume_name(project, volume))})"
        for part, volume in DATA_VOLUMES.items()
    ]
    return "\n".join(
        [
            "set -e",
            "umask 077",
            *mountpoints,
            "work=$(mktemp -d /var/tmp/pgmon-backup.XXXXXX) name='' restart=''",
            "cleanup() {",
            '  [ -z "$name" ] || rm -rf "$prometheus/snapshots/$name"',
            f'  [ -z "$restart" ] || docker start {q(grafana)} >/dev/null 2>&1 || true',
            '  rm -rf "$work"',
            "}",
            "trap cleanup EXIT",
            # Prometheus's own snapshot, through its authenticated API, from inside its container.
            f"answer=$({api_request_command(project, 'prometheus', 'POST', SNAPSHOT_PATH)}) || "
            "{ echo 'pgmon: Prometheus made no snapshot (is the stack deployed and running? docker logs "
            f"{prometheus})' >&2; exit 1; }}",
            'case "$answer" in "HTTP/1."?" 200 "*) ;; *) '
            "echo \"pgmon: Prometheus refused the snapshot: $(printf '%s' \"$answer\" | head -n 1 | tr -cd '[:print:]'"
            f' | cut -c1-200) (docker logs {prometheus})" >&2; exit 1;; esac',
            # Only a plain name, and only a folder under snapshots/: root's tar and rm -rf act on it, and the
            # answer is whatever the process in that container chose to say.
            'snapshot=$(printf \'%s\' "$answer" | sed -n \'s/.*"name" *: *"\\([^"]*\\)".*/\\1/p\')',
            'case "$snapshot" in ""|-*|*[!0-9A-Za-z-]*) '
            "echo \"pgmon: Prometheus's answer names no plain snapshot (letters, digits, -):"
            " $(printf '%s' \"$answer\" | tr -cd '[:print:]' | cut -c1-200)\" >&2; exit 1;; esac",
            "name=$snapshot",
            '[ -d "$prometheus/snapshots/$name" ] && [ ! -L "$prometheus/snapshots/$name" ] || '
            '{ echo "pgmon: Prometheus named the snapshot $name, which is no folder under its snapshots/" >&2; '
            "exit 1; }",
            # Grafana at rest for the seconds its folder is copied.
            f"if [ \"$(docker inspect -f '{{{{.State.Running}}}}' {q(grafana)} 2>/dev/null)\" = true ]; then "
            f"restart=1; docker stop -t 30 {q(grafana)} >/dev/null; fi",
            'cp -a "$grafana/." "$work/grafana"',
            f'if [ -n "$restart" ]; then docker start {q(grafana)} >/dev/null; restart=""; fi',
            'cp -a "$alertmanager/." "$work/alertmanager"',
            f"printf '%s\\n' {q(json.dumps(metadata, indent=1, sort_keys=True))} > \"$work/pgmon-backup.json\"",
            'tar -c -z --numeric-owner -f - -C "$work" pgmon-backup.json grafana alertmanager '
            '-C "$prometheus/snapshots" --transform "s|^$name|prometheus|" "$name"',
        ]
    )


def restore_script(project: str) -> str:
    """Shell (root) that reads the archive on stdin and fills the project's volumes, made here with Compose's labels
    (a later ``docker compose up`` takes them as its own). Exits 3, changing nothing, if one exists already. On a
    failure after that (a full disk, a broken archive, a lost connection) it removes the volumes it made: a retry
    finds the host as before, and no deploy adopts a half-copied Grafana database."""
    q = shlex.quote
    lines = [
        "set -e",
        "umask 077",
        *[
            f"if docker volume inspect {q(volume_name(project, v))} >/dev/null 2>&1; then "
            f"echo 'pgmon: this host has the volume {volume_name(project, v)} already; nothing was restored' >&2; "
            "exit 3; fi"
            for v in DATA_VOLUMES.values()
        ],
        "work=$(mktemp -d /var/tmp/pgmon-restore.XXXXXX) made='' complete=''",
        "cleanup() {",
        '  if [ -z "$complete" ] && [ -n "$made" ]; then',
        "    docker volume rm $made >/dev/null && echo 'pgmon: the volumes this restore made are removed again' >&2 ||",
        '    echo "pgmon: remove the half-restored volumes before a deploy or another restore: docker volume rm $made" >&2',
        "  fi",
        '  rm -rf "$work"',
        "}",
        "trap cleanup EXIT",
        "trap 'exit 1' HUP INT TERM",
        'tar -x -z --numeric-owner -f - -C "$work"',
        # The controller checked the archive (check_archive); root here still copies no link it may hold.
        'if [ -n "$(find "$work" ! -type f ! -type d)" ]; then '
        "echo 'pgmon: the archive holds a link or a special file; nothing was restored' >&2; exit 1; fi",
    ]
    for part in DATA_VOLUMES:
        lines += [
            f'[ -d "$work/{part}" ] || {{ echo "pgmon: the archive has no {part}/" >&2; exit 1; }}',
        ]
    for part, volume in DATA_VOLUMES.items():
        name = volume_name(project, volume)
        lines += [
            f"docker volume create --label com.docker.compose.project={q(project)} "
            f"--label com.docker.compose.volume={q(volume)} {q(name)} >/dev/null",
            f'made="$made "{q(name)}',
            f"mountpoint=$(docker volume inspect -f '{{{{.Mountpoint}}}}' {q(name)})",
            f'cp -a "$work/{part}/." "$mountpoint/"',
            # The volume's own folder as the container had it (Prometheus writes there as its own uid).
            f'chown --reference="$work/{part}" "$mountpoint" && chmod --reference="$work/{part}" "$mountpoint"',
        ]
    return "\n".join([*lines, "complete=1"])


class LocalWriteError(Exception):
    """This machine could not write what the host sent (its disk full, say)."""


def stream(current_host, script: str, write_to=None, read_from=None) -> tuple[int, str]:
    """Run ``script`` on the host with binary stdout into ``write_to`` and/or stdin from ``read_from`` (files),
    through pyinfra's own connection; (exit status, stderr). Nothing of either stream is printed.

    A host that stops reading early has failed: what is left of ``read_from`` is not sent, and its status and
    stderr say why. A failing ``write_to`` ends the command (LocalWriteError)."""
    process = start_process(current_host, script, "pgmon's backup and restore")
    try:
        while read_from is not None and (chunk := read_from.read(CHUNK)):
            process.send(chunk)
        process.end_input()
    except OSError:  # the host closed its input: it has exited
        pass
    if write_to is not None:
        while data := process.recv():
            try:
                write_to.write(data)
                write_to.flush()  # an error here, not when the file closes
            except OSError as error:
                process.close()  # the host's script fails on its next write and cleans up
                raise LocalWriteError(error.strerror or str(error)) from error
    return process.wait()


def _fail(current_host, lines: list[str]) -> bool:
    for line in lines:
        if line.strip():
            logger.error(f"{current_host.print_prefix}pgmon: {line.removeprefix('pgmon: ')}")
    return False


def _download(state, host, script: str, destination: str) -> bool:  # noqa: F811 (pyinfra passes state, host)
    current_host = host
    target = Path(destination)
    partial = target.with_name(target.name + ".partial")
    try:
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
            # The archives hold Grafana's database: a folder pgmon makes is left out of any git repository
            # it is in (pyinfra usually runs in one).
            (target.parent / ".gitignore").write_text(
                "# pgmon's backups hold Grafana's database: never commit them\n*\n"
            )
        # 0600 from the start: Grafana's database holds the admin password's hash.
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            status, errors = stream(current_host, script, write_to=out)
        if status != 0:
            return _fail(
                current_host,
                [
                    f"the backup failed (exit {status}); nothing was written on this machine:",
                    *errors.splitlines()[-10:],
                ],
            )
        check_archive(partial)
        partial.replace(target)
    except LocalWriteError as error:
        return _fail(current_host, [f"could not write {partial} ({error}); no backup was kept"])
    except OSError as error:  # the folder or the file could not be made, the connection broke
        return _fail(current_host, [f"the backup failed: {error}; no backup was kept"])
    except ArchiveError as error:
        return _fail(current_host, [f"the backup is incomplete: {error}; no backup was kept"])
    finally:
        partial.unlink(missing_ok=True)  # gone already when the backup is kept
    logger.info(
        f"{current_host.print_prefix}pgmon: backup written to {target} ({target.stat().st_size} bytes)"
    )
    return True


def _upload(state, host, script: str, source: str) -> bool:  # noqa: F811 (pyinfra passes state, host)
    current_host = host
    with open(source, "rb") as archive:
        status, errors = stream(current_host, script, read_from=archive)
    if status != 0:
        return _fail(
            current_host, [f"the restore failed (exit {status}):", *errors.splitlines()[-10:]]
        )
    logger.info(
        f"{current_host.print_prefix}pgmon: restored {source}; now deploy to start the stack on it"
    )
    return True


def backup_file_name(host_name: str, now: datetime.datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host_name)
    return f"pgmon-{safe}-{now:%Y%m%dT%H%M%SZ}.tar.gz"


@operation(is_idempotent=False)
def copy_to_controller(
    project: str, destination: str, metadata: dict, claim: FunctionCommand | None = None
):
    """
    Stream a consistent copy of the stack's data volumes into a new archive on the controller.

    + project: the Compose project
    + destination: the archive's path on the controller (its folder is made if missing)
    + metadata: written into the archive as pgmon-backup.json
    """
    if not host.state.is_executing:
        host.log(f"pgmon: will write a backup of {project}'s data to {destination}")
    if claim is not None:
        yield claim
    yield FunctionCommand(_download, (backup_script(project, metadata), destination), {})


@operation(is_idempotent=False)
def copy_to_host(project: str, archive: str, claim: FunctionCommand | None = None):
    """
    Create the project's data volumes on the host from an archive ``copy_to_controller`` wrote.

    + project: the Compose project on this host
    + archive: the archive's path on the controller
    """
    if not host.state.is_executing:
        host.log(f"pgmon: will restore {archive} into the volumes of project {project}")
    if claim is not None:
        yield claim
    yield FunctionCommand(_upload, (restore_script(project), archive), {})


def _running(state, project: str) -> None:
    wanted = {"prometheus", "grafana"}
    if not wanted <= set(state.containers):
        raise DeployError(
            f"{host.name}: the pgmon stack of project {project} is not deployed here (no "
            f"{' or '.join(sorted(wanted - set(state.containers)))} container); nothing to back up"
        )


@deploy("Back up pgmon")
def backup_stack(host_config: HostConfig):
    cfg = host_config.config
    state = read_host_state(host, host_config)
    refuse_foreign_project(host_config, state)
    _running(state, cfg.project)
    now = datetime.datetime.now(datetime.UTC)
    metadata = {
        "format": FORMAT,
        "host": host.name,
        "project": cfg.project,
        "created": f"{now:%Y-%m-%dT%H:%M:%SZ}",
        "images": {c: host_config.image(c) for c in ("prometheus", "alertmanager", "grafana")},
    }
    destination = str(Path(cfg.backup_dir).expanduser() / backup_file_name(host.name, now))
    copy_to_controller(
        name="Copy Prometheus's snapshot and Grafana's data to the controller",
        project=cfg.project,
        destination=destination,
        metadata=metadata,
        claim=claim_host(host_config, state),
    )


@deploy("Restore pgmon")
def restore_stack(host_config: HostConfig):
    cfg = host_config.config
    if not cfg.restore_from:
        raise DeployError(
            "pgmon_restore_from: name the archive backup.py wrote, e.g. "
            "--data pgmon_restore_from=~/pgmon-backups/pgmon-monitor-20260101T000000Z.tar.gz"
        )
    archive = Path(cfg.restore_from).expanduser()
    if not archive.is_file():
        raise DeployError(f"pgmon_restore_from: {str(archive)!r} is not a file on this machine")
    try:
        check_archive(archive)
    except ArchiveError as error:
        raise DeployError(
            f"pgmon_restore_from: {str(archive)!r} is not a backup this pgmon restores: {error}. "
            "Name an archive backup.py wrote; nothing was changed"
        ) from None
    state = read_host_state(host, host_config)
    refuse_foreign_project(host_config, state)
    _, existing = leftovers(host, cfg.project, DATA_VOLUMES.values())
    if existing or state.containers:
        raise DeployError(
            f"{host.name} already has pgmon's {'volumes ' + ', '.join(existing) if existing else 'containers'} "
            f"(project {cfg.project}); a restore only goes onto a host without them, so nothing was changed. "
            "Remove them first: pyinfra ... uninstall.py --data pgmon_uninstall_delete_data=true"
        )
    install_docker(host_config, state)
    copy_to_host(
        name="Restore pgmon's data volumes from the archive",
        project=cfg.project,
        archive=str(archive),
        claim=claim_host(host_config, state),
    )
