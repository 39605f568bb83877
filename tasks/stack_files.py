"""Step 2: put the rendered configuration under base_dir, in one round trip.

Changed files travel as one tar stream on the command's stdin: secrets never
sit in a world-readable temporary file, never appear in a command line, and
are never printed (``--diff`` shows "content hidden" for them). What must
follow a change (reload, restart) is planned here and done by step 3, once
the containers are up. Step 3 does not receive this plan: it makes it again
(``stack_containers.after_file_changes`` calls ``plan_files`` with the same
stack and host state), so ``plan_files`` must stay a pure function of them.
"""

from __future__ import annotations

import base64
import difflib
import io
import shlex
import tarfile
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation
from pyinfra.facts.files import FileContents

from .grafana_tls import needs_self_signed, self_signed_certificate
from .host_lock import claim_host
from .host_state import Entry, HostState
from .settings import DeployError, Settings
from .stack_model import (
    RESET_GRAFANA_PASSWORD,
    STAGE_PREFIX,
    ConfigCheck,
    ManagedDir,
    ManagedFile,
    StackFiles,
)

# Before pgmon kept a manifest, only a removed database's folder was left to prune.
PRUNED_WITHOUT_MANIFEST = "exporters/"
CANDIDATES = ".check"  # inside the staging folder: whole component directories as they will be


@dataclass(frozen=True)
class Candidate:
    """A component's directory as it will be after this run, checked before any of its files is replaced."""

    check: ConfigCheck
    directories: tuple[ManagedDir, ...]
    files: tuple[ManagedFile, ...]


@dataclass(frozen=True)
class FilePlan:
    write_dirs: tuple[ManagedDir, ...]
    write_files: tuple[ManagedFile, ...]
    remove: tuple[str, ...]
    actions: tuple[str, ...]
    candidates: tuple[Candidate, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.write_dirs or self.write_files or self.remove)


def _differs(entry: Entry | None, kind: str, mode: int, uid: int, gid: int) -> bool:
    return entry is None or (entry.kind, entry.mode, entry.uid, entry.gid) != (kind, mode, uid, gid)


def plan_files(
    stack: StackFiles, current: dict[str, Entry], written: frozenset[str] | None = None
) -> FilePlan:
    """What to write, remove and reload so that base_dir matches ``stack``.

    Only paths pgmon wrote before (``written``, its manifest on the host) are ever removed: files a user keeps
    under base_dir, even inside pgmon's folders, are left alone.
    """
    dirs = tuple(
        d for d in stack.directories if _differs(current.get(d.path), "d", d.mode, d.uid, d.gid)
    )
    files = tuple(
        f
        for f in stack.files
        if _differs(current.get(f.path), "f", f.mode, f.uid, f.gid)
        or current[f.path].sha256 != f.sha256
    )
    wanted = {d.path for d in stack.directories} | {f.path for f in stack.files}
    ours = (
        written
        if written is not None
        else {p for p in current if p.startswith(PRUNED_WITHOUT_MANIFEST)}
    )
    stale = sorted(
        path
        for path in current
        if (path in ours or path.startswith(STAGE_PREFIX)) and path not in wanted
    )
    # Removing a directory removes what is inside: list only the outermost stale paths.
    remove = tuple(p for p in stale if not any(p.startswith(other + "/") for other in stale))
    changed = [f.path for f in files] + list(remove)
    candidates = tuple(
        Candidate(
            check,
            tuple(d for d in stack.directories if _under(d.path, check.directory)),
            tuple(f for f in stack.files if _under(f.path, check.directory)),
        )
        for check in stack.config_checks
        if any(_under(path, check.directory) for path in changed)
    )
    actions: list[str] = []
    for f in files:
        # A brand-new file is read when its container starts, except Grafana's admin password: Grafana
        # applies it only when it creates its database, and that volume may outlive base_dir.
        if f.path in current or RESET_GRAFANA_PASSWORD in f.on_change:
            actions += [a for a in f.on_change if a not in actions]
    return FilePlan(dirs, files, remove, tuple(actions), candidates)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def tar_stream(plan: FilePlan) -> bytes:
    """The changed files with their owners and modes (their directories are made by ``apply_script``), and each
    candidate directory whole, under CANDIDATES."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:

        def add(path: str, entry: ManagedDir | ManagedFile) -> None:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
            if isinstance(entry, ManagedDir):
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(entry.content)
                archive.addfile(info, io.BytesIO(entry.content))

        for f in plan.write_files:
            add(f.path, f)
        for candidate in plan.candidates:
            for entry in (*candidate.directories, *candidate.files):
                add(f"{CANDIDATES}/{entry.path}", entry)
    return buffer.getvalue()


def check_command(candidate: Candidate, base_dir: str) -> str:
    """Run the component's checker on its candidate directory; on refusal say which component, file and why,
    remove the staging folder and stop before anything is replaced."""
    check = candidate.check
    mount = shlex.quote(f"{CANDIDATES}/{check.directory}:{check.mount}:ro")
    run = (
        f"docker run --rm --network none --user {check.user}:{check.user} "
        f'--entrypoint {shlex.quote(check.command[0])} -v "$stage"/{mount} '
        + shlex.join([check.image, *check.command[1:]])
    )
    checker = check.command[0].rsplit("/", 1)[-1]
    refused = shlex.quote(
        f"pgmon: {check.image} refuses the new {check.directory} configuration ({checker}; {check.mount} there is "
        f"{base_dir}/{check.directory}); nothing was replaced, the running configuration stays:"
    )
    unchecked = shlex.quote(
        f"pgmon: could not run {checker} of {check.image} to check the new {check.directory} "
        "configuration; nothing was replaced:"
    )
    # docker run exits 125-127 when it could not run the checker at all, the checker 1 when it refuses.
    return (
        f"{{ out=$({run} 2>&1) || {{ status=$?; [ $status -ge 125 ] && message={unchecked} || message={refused}; "
        f'printf "%s\\n" "$message" "$out" >&2; rm -rf "$stage"; exit 1; }}; }}'
    )


def apply_script(plan: FilePlan, base_dir: str) -> str:
    """Shell that unpacks the tar from stdin into a staging folder, then renames each file into place.

    A rename is atomic: Prometheus, watching its target files, never reads half a file.
    """
    base = shlex.quote(base_dir)
    steps = [f"umask 077 && mkdir -p {base} && stage=$(mktemp -d {base}/{STAGE_PREFIX}XXXXXX)"]
    for d in sorted(plan.write_dirs, key=lambda d: d.path.count("/") + (d.path != ".")):
        path = shlex.quote(f"{base_dir}/{d.path}")
        # Whatever stands there that is not a directory (a planted symlink) goes; chown -h never follows a link;
        # a 5-digit mode clears the setgid bit a parent directory passes on, which chmod 755 would keep.
        steps.append(
            f"{{ [ -d {path} ] && [ ! -L {path} ] || {{ rm -rf {path} && mkdir {path}; }}; }} && "
            f"chown -h {d.uid}:{d.gid} {path} && chmod {d.mode:05o} {path}"
        )
    if plan.write_files:
        # pyinfra's stdin is text, so the tar travels base64-encoded.
        steps.append('base64 -d | tar -C "$stage" -x -p --same-owner -f -')
        steps += [check_command(candidate, base_dir) for candidate in plan.candidates]
        # -T: a symlink planted where a file belongs is replaced, never followed into another directory.
        steps += [
            f'mv -fT "$stage"/{shlex.quote(f.path)} {shlex.quote(f"{base_dir}/{f.path}")}'
            for f in plan.write_files
        ]
    steps += [f"rm -rf -- {shlex.quote(f'{base_dir}/{path}')}" for path in plan.remove]
    steps.append('rm -rf "$stage"')
    return " && ".join(steps)


def describe(plan: FilePlan, current: dict[str, Entry]) -> list[str]:
    lines = [f"{'update' if f.path in current else 'create'} {f.path}" for f in plan.write_files]
    lines += [f"remove {path}" for path in plan.remove]
    return lines


def _log_diff(plan: FilePlan, old_contents: dict[str, bytes]) -> None:
    for f in plan.write_files:
        if f.secret:
            logger.info(f"  {f.path}: content hidden (holds a secret)")
            continue
        old = old_contents.get(f.path, b"").decode(errors="replace").splitlines(keepends=True)
        new = f.content.decode(errors="replace").splitlines(keepends=True)
        for line in difflib.unified_diff(old, new, f"a/{f.path}", f"b/{f.path}", n=1):
            logger.info("  " + line.rstrip("\n"))


@operation()
def sync_stack_files(
    base_dir: str,
    stack: StackFiles,
    current: dict[str, Entry],
    written: frozenset[str] | None = None,
    claim: FunctionCommand | None = None,
):
    """
    Make ``base_dir`` hold exactly the rendered stack files, with their owners and modes.

    + base_dir: the stack's directory on the host
    + stack: the rendered files (``render.render_stack``)
    + current: the host's files now (``host_state.read_host_state(...).entries``)
    + written: what pgmon wrote there before (``HostState.written``); only those paths are ever removed
    + claim: run before any change, to fail changing nothing if another run holds the host (``host_lock.claim_host``)

    **Example:**

    .. code:: python

        sync_stack_files(
            name="Write pgmon configuration",
            base_dir="/opt/pgmon", stack=stack, current=state.entries, written=state.written,
            claim=claim_host(settings, state),
        )
    """
    plan = plan_files(stack, current, written)
    if plan.empty:
        return
    if not host.state.is_executing:
        for line in describe(plan, current):
            host.log(f"pgmon: will {line}")
        if host.state.config.DIFF:
            _log_diff(plan, _old_contents(plan, current, base_dir))
    stdin = base64.encodebytes(tar_stream(plan)).decode() if plan.write_files else None
    if claim is not None:
        yield claim
    yield StringCommand(apply_script(plan, base_dir), _stdin=stdin)


def _old_contents(plan: FilePlan, current: dict[str, Entry], base_dir: str) -> dict[str, bytes]:
    """Current contents of the non-secret files about to change, for --diff only."""
    contents = {}
    for f in plan.write_files:
        if f.path in current and not f.secret:
            lines = host.get_fact(FileContents, path=f"{base_dir}/{f.path}") or []
            contents[f.path] = "".join(line + "\n" for line in lines).encode()
    return contents


def refuse_admin_rename(settings: Settings, state: HostState) -> None:
    """Grafana creates its admin once, in its kept database: a renamed pgmon_grafana_admin_user would name a user
    that does not exist, and every login would fail. Say so before anything changes."""
    running, wanted = state.grafana_admin_user, settings.config.grafana_admin_user
    if running is not None and running != wanted:
        raise DeployError(
            f"pgmon_grafana_admin_user: Grafana on this host was set up with the admin {running!r} and keeps it in "
            f"its database; {wanted!r} would not exist there. Set pgmon_grafana_admin_user back to {running!r}, or "
            "rename the user in Grafana first (Administration > Users), then set the new name here. "
            "Nothing on the host was changed."
        )


@deploy("Configure the pgmon stack")
def configure_stack(settings: Settings, state: HostState, stack: StackFiles):
    """Write compose, Prometheus, Alertmanager and Grafana files under base_dir, and make Grafana's self-signed
    certificate on the host when it needs one."""
    refuse_admin_rename(settings, state)
    sync_stack_files(
        name="Write pgmon configuration",
        base_dir=settings.config.base_dir,
        stack=stack,
        current=state.entries,
        written=state.written,
        claim=claim_host(settings, state),
    )
    if settings.config.grafana_https and settings.grafana_tls_certificate is None:
        self_signed_certificate(
            name="Make Grafana's self-signed certificate",
            base_dir=settings.config.base_dir,
            inventory_name=host.name,
            make=needs_self_signed(state.entries, state.grafana_certificate_renew),
            claim=claim_host(settings, state),
        )
