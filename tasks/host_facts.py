"""What pgmon reads on the processing host, fact by fact: the shell that prints a fact's lines sits beside the
parser that reads them back, as pyinfra's own facts keep ``command`` and ``process`` together.

Each line a fact prints starts with one of its words (``engine 28.2.2``, ``entry f 400 0 0 ./x``).
``host_state`` runs the commands of all facts as one script, in one round trip, and hands each parser the
lines that start with its words. A line a parser cannot read is skipped, as if the host had not printed it
(a plan made without it rewrites rather than trusts), and is never quoted: some lines hold digests of
secret files.

A new fact is a ``HostFact`` (here, or beside what it is about, as ``grafana_tls`` and ``isolation`` keep
theirs), a ``HostState`` field of the same name, and its place in ``host_state.HOST_FACTS``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .stack_model import DISCOVERED_DIR, MANIFEST, container_name

Lines = list[tuple[str, str]]  # a fact's lines as (first word, the rest)


@dataclass(frozen=True)
class HostFact:
    """One thing pgmon reads on the host: ``command(base_dir, project)`` prints its lines, ``parse`` reads
    them (as ``(word, rest)`` pairs) into the value of the ``HostState`` field named ``field``."""

    field: str
    words: tuple[str, ...]
    command: Callable[[str, str], str]
    parse: Callable[[Lines], object]


def facts_command(facts: Iterable[HostFact], base_dir: str, project: str) -> str:
    """One script printing every fact's lines; it exits 0 whatever a fact found."""
    return "\n".join([*(fact.command(base_dir, project) for fact in facts), "true"])


def parse_facts(facts: Iterable[HostFact], lines: Iterable[str]) -> dict[str, object]:
    """Each fact's value, by its field, from the lines of the whole listing."""
    facts = tuple(facts)
    mine: dict[str, Lines] = {word: [] for fact in facts for word in fact.words}
    for line in lines:
        word, _, rest = line.partition(" ")
        if word in mine:
            mine[word].append((word, rest))
    return {
        fact.field: fact.parse([pair for word in fact.words for pair in mine[word]])
        for fact in facts
    }


def _if_docker(command: str) -> str:
    return f"if command -v docker >/dev/null 2>&1; then {command}; fi"


def present(lines: Lines) -> bool:
    return bool(lines)


def last_word(lines: Lines) -> str | None:
    """The rest of the last line; None when it is empty or there is none."""
    return (lines[-1][1].strip() or None) if lines else None


DOCKER_INSTALLED = HostFact(
    "docker_installed",
    ("docker-installed",),
    lambda base_dir, project: _if_docker("echo docker-installed"),
    present,
)
ENGINE_VERSION = HostFact(
    "engine_version",
    ("engine",),
    lambda base_dir, project: _if_docker(
        "echo \"engine $(docker version --format '{{.Server.Version}}' 2>/dev/null)\""
    ),
    last_word,
)
COMPOSE_VERSION = HostFact(
    "compose_version",
    ("compose",),
    lambda base_dir, project: _if_docker(
        'echo "compose $(docker compose version --short 2>/dev/null)"'
    ),
    last_word,
)


@dataclass(frozen=True)
class Container:
    revision: str
    state: str  # docker's: running, exited, restarting, ...


def containers_command(base_dir: str, project: str) -> str:
    label = shlex.quote(f"label=com.docker.compose.project={project}")
    fmt = shlex.quote(
        'container {{.Label "com.docker.compose.service"}} {{.Label "pgmon.revision"}} {{.State}}'
    )
    return _if_docker(f"docker ps -a --filter {label} --format {fmt} 2>/dev/null")


def parse_containers(lines: Lines) -> dict[str, Container]:
    """``container SERVICE REVISION STATE`` -> {service: Container}; a container of the project without pgmon's
    revision label (another Compose project's of the same name) reads with revision ``""``."""
    containers = {}
    for _, rest in lines:
        parts = rest.split(" ")
        if len(parts) == 3:
            service, revision, state = parts
            containers[service] = Container(revision, state)
    return containers


CONTAINERS = HostFact("containers", ("container",), containers_command, parse_containers)


def images_command(base_dir: str, project: str) -> str:
    fmt = shlex.quote("image {{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}")
    return _if_docker(f"docker image ls --format {fmt} 2>/dev/null")


def image_name(reference: str) -> str:
    """A reference as ``docker image ls`` names it: Docker Hub's host and ``library/`` left out, ``:latest``
    where no tag is given, and a digest named without the tag beside it."""
    for hub in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if reference.startswith(hub):
            reference = reference.removeprefix(hub)
            break
    reference = reference.removeprefix("library/")
    repository, at, digest = reference.partition("@")
    path, _, last = repository.rpartition("/")
    name, colon, tag = last.partition(":")
    repository = f"{path}/{name}" if path else name
    if at:
        return f"{repository}@{digest}"
    return f"{repository}:{tag if colon else 'latest'}"


def parse_images(lines: Lines) -> frozenset[str]:
    """``image REPO:TAG REPO@DIGEST`` -> every name an image on the host answers to."""
    return frozenset(name for _, rest in lines for name in rest.split())


IMAGES = HostFact("images", ("image",), images_command, parse_images)


def grafana_admin_command(base_dir: str, project: str) -> str:
    env = shlex.quote("{{range .Config.Env}}{{println .}}{{end}}")
    grafana = shlex.quote(container_name(project, "grafana"))
    return _if_docker(
        f"docker inspect -f {env} {grafana} 2>/dev/null"
        " | sed -n 's/^GF_SECURITY_ADMIN_USER=/grafana-admin /p'"
    )


GRAFANA_ADMIN_USER = HostFact(
    "grafana_admin_user",
    ("grafana-admin",),
    grafana_admin_command,
    lambda lines: lines[-1][1] if lines else None,
)


@dataclass(frozen=True)
class Entry:
    kind: str  # "f" or "d"
    mode: int
    uid: int
    gid: int
    sha256: str | None = None


def entries_command(base_dir: str, project: str) -> str:
    base = shlex.quote(base_dir)
    # Names with control characters (a newline) are left out: pgmon writes none and touches none.
    return (
        f"if [ -d {base} ]; then ( cd {base} &&"
        " find . -path '*[[:cntrl:]]*' -prune -o -printf 'entry %y %m %U %G %p\\n' &&"
        " find . -path '*[[:cntrl:]]*' -prune -o -type f -exec sha256sum {} + | sed 's/^/sum /' ); fi"
    )


def _relative(find_path: str) -> str:
    return "." if find_path == "." else find_path.removeprefix("./")


def parse_entries(lines: Lines) -> dict[str, Entry]:
    """``entry KIND MODE UID GID PATH`` and ``sum SHA256  PATH`` -> {path relative to base_dir: Entry}."""
    entries: dict[str, Entry] = {}
    sums: dict[str, str] = {}
    for word, rest in lines:
        if word == "entry":
            try:
                kind, mode, uid, gid, path = rest.split(" ", 4)
                entries[_relative(path)] = Entry(kind, int(mode, 8), int(uid), int(gid))
            except ValueError:
                continue
        else:
            digest, separator, path = rest.partition("  ")
            if separator:
                sums[_relative(path)] = digest
    return {
        path: Entry(e.kind, e.mode, e.uid, e.gid, sums.get(path)) for path, e in entries.items()
    }


ENTRIES = HostFact("entries", ("entry", "sum"), entries_command, parse_entries)


def manifest_command(base_dir: str, project: str) -> str:
    manifest = shlex.quote(f"{base_dir}/{MANIFEST}")
    return f"[ ! -f {manifest} ] || sed 's/^/written /' {manifest}"


WRITTEN = HostFact(
    "written",
    ("written",),
    manifest_command,
    # None: no manifest (a host deployed before pgmon kept one), not an empty one.
    lambda lines: frozenset(rest for _, rest in lines) if lines else None,
)


# The ``database`` label of each entry of a discovery list: one entry per line (files/discovery/discover.sh),
# the value a JSON string, printed as it stands.
_DATABASE_LABEL = r's/.*"database": \("\([^"\\]\|\\.\)*"\).*/\1/p'


def discovered_command(base_dir: str, project: str) -> str:
    folder = shlex.quote(f"{base_dir}/{DISCOVERED_DIR}")
    return (
        f'for f in {folder}/*.json; do [ -f "$f" ] || continue; n=${{f##*/}}; n=${{n%.json}};'
        f' sed -n {shlex.quote(_DATABASE_LABEL)} "$f" | sed "s/^/discovered $n /"; done'
    )


def parse_discovered(lines: Lines) -> dict[str, list[str]]:
    """``discovered SERVER "LABEL"`` -> {server entry: the ``database`` labels its list holds now}."""
    found: dict[str, list[str]] = {}
    for _, rest in lines:
        server, _, label = rest.partition(" ")
        try:
            found.setdefault(server, []).append(json.loads(label))
        except ValueError:
            continue
    return found


DISCOVERED = HostFact("discovered", ("discovered",), discovered_command, parse_discovered)
