"""Backup and restore against stand-ins: pgmon's own scripts run with a ``docker`` (and a failing ``cp``) of the
test's, the archive check on archives made here, the transfers through a real ``@local`` process. The
end-to-end proof on real hosts is tests/e2e/test_bare_host.py ("Moving")."""

import io
import json
import logging
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks.backup import (
    FORMAT,
    ArchiveError,
    _download,
    _upload,
    backup_script,
    check_archive,
    restore_script,
)

from .test_pyinfra_internals import local_host

# A docker of volumes as folders under $VOLS; `exec` answers Prometheus's snapshot call with $ANSWER.
DOCKER = r"""#!/bin/sh
echo "$*" >> "$LOG"
for last; do :; done
case "$1 $2" in
"volume inspect") [ -d "$VOLS/$last" ] || exit 1; [ "$3" != -f ] || echo "$VOLS/$last" ;;
"volume create") mkdir -p "$VOLS/$last" ;;
"volume rm") shift 2; for name; do rm -rf "${VOLS:?}/$name"; done ;;
exec*) printf '%s' "$ANSWER" ;;
inspect*) echo false ;;
esac
"""
SNAPSHOT = "20260101T000000Z-0123456789abcdef"


@pytest.fixture
def host_dir(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "vols").mkdir()
    return tmp_path


def run(host_dir: Path, script: str, stdin: bytes = b"", **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", "-c", script],
        input=stdin,
        capture_output=True,
        env={
            "PATH": f"{host_dir / 'bin'}:/usr/bin:/bin",
            "VOLS": str(host_dir / "vols"),
            "LOG": str(host_dir / "log"),
            **env,
        },
    )


def deployed_volumes(host_dir: Path, snapshot_blocks: int = 1) -> None:
    vols = host_dir / "vols"
    snapshot = vols / "p_prometheus-data/snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    for i in range(snapshot_blocks):
        (snapshot / f"01BLOCK{i}").mkdir()
        (snapshot / f"01BLOCK{i}/meta.json").write_text("{}")
    (vols / "p_grafana-data").mkdir()
    (vols / "p_grafana-data/grafana.db").write_text("dashboards")
    (vols / "p_alertmanager-data").mkdir()
    (vols / "p_alertmanager-data/silences").write_text("")


def answer(name: str, status: str = "200 OK") -> str:
    """Prometheus's answer to the snapshot call as nc prints it: status line, headers, body."""
    body = json.dumps({"status": "success", "data": {"name": name}}, separators=(",", ":"))
    return f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n\r\n{body}"


# ---------------------------------------------------------------- backup: Prometheus's answer
def test_backup_writes_an_archive_the_restore_accepts_and_removes_the_snapshot(host_dir):
    deployed_volumes(host_dir)
    result = run(host_dir, backup_script("p", {"format": FORMAT}), ANSWER=answer(SNAPSHOT))
    assert result.returncode == 0, result.stderr
    (host_dir / "a.tar.gz").write_bytes(result.stdout)
    assert check_archive(host_dir / "a.tar.gz") == {"format": FORMAT}
    assert not (host_dir / "vols/p_prometheus-data/snapshots" / SNAPSHOT).exists()


def test_a_snapshot_call_prometheus_refuses_fails_the_backup_with_its_status(host_dir):
    """Without the API's password Prometheus answers 401 and makes no snapshot."""
    deployed_volumes(host_dir)
    result = run(
        host_dir,
        backup_script("p", {"format": FORMAT}),
        ANSWER=answer(SNAPSHOT, "401 Unauthorized"),
    )
    assert result.returncode != 0 and result.stdout == b""
    assert b"Prometheus refused the snapshot: HTTP/1.0 401 Unauthorized" in result.stderr


@pytest.mark.parametrize("name", ["../../../canary", "..", "-x", "a b", ""])
def test_backup_acts_on_no_path_but_a_plain_snapshot_name_under_snapshots(host_dir, name):
    """A Prometheus answering "../../../canary" made root tar that folder, then rm -rf it."""
    deployed_volumes(host_dir)
    canary = host_dir / "canary"
    canary.mkdir()
    (canary / "kept").write_text("")
    result = run(host_dir, backup_script("p", {"format": FORMAT}), ANSWER=answer(name))
    assert result.returncode != 0 and result.stdout == b""
    assert b"names no plain snapshot" in result.stderr
    assert (canary / "kept").exists()


def test_backup_of_a_name_that_is_no_folder_or_a_link_under_snapshots_fails(host_dir):
    deployed_volumes(host_dir)
    (host_dir / "elsewhere").mkdir()
    (host_dir / "vols/p_prometheus-data/snapshots/linked").symlink_to(host_dir / "elsewhere")
    for name in ("linked", "missing"):
        result = run(host_dir, backup_script("p", {"format": FORMAT}), ANSWER=answer(name))
        assert result.returncode != 0 and b"no folder under its snapshots/" in result.stderr
    assert (host_dir / "elsewhere").is_dir()


# ---------------------------------------------------------------- the archive's structure
def archive(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (name, kind f|d|l|h, content or link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind in "lh":
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = data
            else:
                info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()) if kind == "f" else None)
    return path


def good_members(format_: str = FORMAT) -> list[tuple[str, str, str]]:
    return [
        ("pgmon-backup.json", "f", json.dumps({"format": format_, "project": "p"}, indent=1)),
        ("grafana", "d", ""),
        ("grafana/grafana.db", "f", "dashboards"),
        ("alertmanager", "d", ""),
        ("prometheus", "d", ""),
        ("prometheus/01BLOCK", "d", ""),
        ("prometheus/01BLOCK/meta.json", "f", "{}"),
    ]


def test_a_whole_archive_is_accepted(tmp_path):
    assert check_archive(archive(tmp_path / "a.tar.gz", good_members()))["format"] == FORMAT


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda m: good_members("pgmon-backup 10"), "says format 'pgmon-backup 10'"),
        (lambda m: good_members("pgmon-backup 1 "), "says format"),
        (lambda m: m[1:], "no pgmon-backup.json"),
        (
            lambda m: [x for x in m if "grafana" not in x[0]] + [("grafana", "l", "/etc")],
            "is a link",
        ),
        (lambda m: m + [("grafana/x", "h", "grafana/grafana.db")], "is a link"),
        (lambda m: m + [("alertmanager/x", "l", "/root")], "is a link"),
        (lambda m: [x for x in m if not x[0].startswith("prometheus/")], "holds no block"),
        (lambda m: [x for x in m if x[0] != "grafana/grafana.db"], "no grafana.db"),
        (lambda m: [x for x in m if x[0] != "alertmanager"], "has no alertmanager/"),
        (lambda m: m + [("grafana/../../x", "f", "")], "which no pgmon backup has"),
        (lambda m: m + [("/etc/x", "f", "")], "which no pgmon backup has"),
        (lambda m: m + [("./grafana/x", "f", "")], "which no pgmon backup has"),
    ],
)
def test_an_archive_backup_py_would_not_write_is_refused_naming_why(tmp_path, change, error):
    with pytest.raises(ArchiveError, match=error.replace("(", r"\(")):
        check_archive(archive(tmp_path / "a.tar.gz", change(good_members())))


def test_a_file_that_is_no_tar_gz_is_refused(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match="not a readable tar.gz"):
        check_archive(tmp_path / "a.tar.gz")


# ---------------------------------------------------------------- restore on the host
def test_restore_fills_the_three_volumes(host_dir, tmp_path):
    data = archive(tmp_path / "a.tar.gz", good_members()).read_bytes()
    result = run(host_dir, restore_script("p"), data)
    assert result.returncode == 0, result.stderr
    assert (host_dir / "vols/p_grafana-data/grafana.db").read_text() == "dashboards"
    assert (host_dir / "vols/p_prometheus-data/01BLOCK/meta.json").exists()


def test_restore_follows_no_link_in_the_archive(host_dir, tmp_path):
    """The host's root copied the folder a symlinked part named into a volume."""
    (tmp_path / "host-folder").mkdir()
    (tmp_path / "host-folder/shadow").write_text("root's")
    members = [
        ("grafana", "l", str(tmp_path / "host-folder")) if n == "grafana" else (n, k, d)
        for n, k, d in good_members()
        if n != "grafana/grafana.db"
    ]
    result = run(
        host_dir, restore_script("p"), archive(tmp_path / "a.tar.gz", members).read_bytes()
    )
    assert result.returncode != 0 and b"holds a link or a special file" in result.stderr
    assert list((host_dir / "vols").iterdir()) == []


def test_a_restore_that_fails_partway_removes_the_volumes_it_made_and_can_be_retried(
    host_dir, tmp_path
):
    """A full disk while Grafana's folder is copied left the volumes: every retry refused, and a deploy
    would adopt a half-copied database."""
    data = archive(tmp_path / "a.tar.gz", good_members()).read_bytes()
    (host_dir / "bin/cp").write_text(
        '#!/bin/sh\ncase "$*" in *grafana/.*) echo "cp: No space left on device" >&2; exit 1;; esac\n'
        'exec /bin/cp "$@"\n'
    )
    (host_dir / "bin/cp").chmod(0o755)
    result = run(host_dir, restore_script("p"), data)
    assert result.returncode != 0 and b"No space left on device" in result.stderr
    assert b"volumes this restore made are removed" in result.stderr
    assert list((host_dir / "vols").iterdir()) == []
    (host_dir / "bin/cp").unlink()
    assert run(host_dir, restore_script("p"), data).returncode == 0
    assert (host_dir / "vols/p_grafana-data/grafana.db").read_text() == "dashboards"


def test_a_restore_refused_for_an_existing_volume_removes_nothing(host_dir, tmp_path):
    (host_dir / "vols/p_grafana-data").mkdir()
    data = archive(tmp_path / "a.tar.gz", good_members()).read_bytes()
    result = run(host_dir, restore_script("p"), data)
    assert result.returncode == 3 and (host_dir / "vols/p_grafana-data").is_dir()
    assert "volume rm" not in (host_dir / "log").read_text()


# ---------------------------------------------------------------- transfers
def errors_logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_a_host_that_stops_reading_the_upload_is_reported_with_its_own_reason(tmp_path, caplog):
    source = tmp_path / "big.tar.gz"
    source.write_bytes(b"\0" * (8 << 20))  # more than any pipe holds
    script = "head -c 10 >/dev/null; echo 'pgmon: no space left in /var/tmp' >&2; exit 4"
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        assert _upload(None, local_host(), script, str(source)) is False
    assert "the restore failed (exit 4)" in errors_logged(caplog)
    assert "no space left in /var/tmp" in errors_logged(caplog)


def test_a_download_this_machine_cannot_write_leaves_no_partial_file(tmp_path, caplog):
    target = tmp_path / "backups/a.tar.gz"
    target.parent.mkdir()
    partial = target.with_name("a.tar.gz.partial")
    partial.symlink_to("/dev/full")  # a full disk: every write fails with ENOSPC
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        assert _download(None, local_host(), "head -c 1000000 /dev/zero", str(target)) is False
    assert "No space left on device" in errors_logged(caplog)
    assert not partial.is_symlink() and not target.exists()


def test_a_download_that_is_no_whole_backup_is_not_kept(tmp_path, caplog):
    target = tmp_path / "a.tar.gz"
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        assert _download(None, local_host(), "printf 'x'", str(target)) is False
    assert "the backup is incomplete: it is not a readable tar.gz" in errors_logged(caplog)
    assert list(tmp_path.iterdir()) == []


def test_a_backup_folder_pgmon_makes_stays_out_of_the_repository_it_is_in(tmp_path, caplog):
    """pyinfra usually runs in a repository, and the archive holds Grafana's database."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    good = archive(tmp_path / "good.tar.gz", good_members())
    target = tmp_path / "repo/pgmon-backups/a.tar.gz"
    assert _download(None, local_host(), f"cat {good}", str(target)) is True
    assert target.read_bytes() == good.read_bytes() and target.stat().st_mode & 0o077 == 0
    status = subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""
