"""Step 1: Docker Engine and Compose v2 on the processing host (Debian or Ubuntu).

Nothing is done when an engine answers and ``docker compose`` exists. Otherwise, with
``pgmon_docker_install = "auto"`` (the default), the distribution's own packages where they include
Compose v2 (Debian 13+, Ubuntu 24.04+) and Docker's apt repository elsewhere; ``"distro"`` and
``"docker-repo"`` force one or the other. A host that already runs an engine without Compose v2 gets
Compose only, from where its engine came (Docker's ``docker-compose-plugin`` beside ``docker-ce``).
Then ``systemctl enable --now docker``: the engine, and with it the stack, starts at boot.

The distribution path is proven end to end on a bare Debian 13 test host (tests/e2e/test_bare_host.py);
Docker's repository cannot be reached from the test machines, so its commands are covered by unit tests
(tests/unit/test_docker_engine.py), which run the script below against stand-ins of apt-get and curl, and
against the real apt reading a private apt state (a host with Docker's source of 2020-2023).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, server, systemd

from .host_lock import claim_before_changes, claim_host
from .host_state import HostState
from .settings import DeployError, HostConfig

DOCKER_REPO_PACKAGES = (
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
)
DOCKER_REPO_COMPOSE = "docker-compose-plugin"
# The distributions' own Compose v2 package, beside their engine (docker.io).
DISTRO_COMPOSE = {"Debian": "docker-compose", "Ubuntu": "docker-compose-v2"}
KEYRING = "/etc/apt/keyrings/docker.asc"
SOURCES = "/etc/apt/sources.list.d/docker.sources"


def distro_has_compose_v2(distro: str, major: int) -> bool:
    return (distro == "Debian" and major >= 13) or (distro == "Ubuntu" and major >= 24)


def distro_packages(distro: str, major: int) -> list[str]:
    if distro == "Debian" and major >= 13:
        # docker.io only recommends its CLI there: a host with Recommends off would get an engine without it.
        return ["docker.io", "docker-cli", "docker-compose"]
    if distro == "Ubuntu" and major >= 24:
        return ["docker.io", "docker-compose-v2"]
    raise DeployError(
        f"pgmon_docker_install: {distro} {major} has no Compose v2 package; "
        "use pgmon_docker_install = 'auto' (the default) or 'docker-repo'"
    )


@dataclass(frozen=True)
class DockerPlan:
    """What step 1 installs, and from where: ``distro`` (apt, the host's own sources) or ``docker-repo``."""

    source: str
    packages: tuple[str, ...]
    compose_only: bool  # an engine is there already

    @property
    def operation_name(self) -> str:
        what = "Compose v2" if self.compose_only else "Docker"
        where = "the distribution" if self.source == "distro" else "Docker's apt repository"
        return f"Install {what} from {where}"


def install_source(setting: str, distro: str, major: int) -> str:
    """``auto`` -> the distribution where it has Compose v2, Docker's repository elsewhere."""
    if setting == "auto":
        return "distro" if distro_has_compose_v2(distro, major) else "docker-repo"
    if setting == "distro":
        distro_packages(distro, major)  # refuses a release without Compose v2, naming the fix
    return setting


def plan_docker(
    setting: str,
    distro: str,
    major: int,
    engine_installed: bool,
    installed_packages: frozenset[str] = frozenset(),
) -> DockerPlan:
    """What to install on a host that lacks Docker, or has an engine without Compose v2."""
    if not engine_installed:
        source = install_source(setting, distro, major)
        packages = distro_packages(distro, major) if source == "distro" else DOCKER_REPO_PACKAGES
        return DockerPlan(source, tuple(packages), compose_only=False)
    if installed_packages & {"docker-ce", "docker-ce-cli"}:
        # Docker's own engine: its Compose plugin (docker.io's neighbours would conflict with docker-ce).
        return DockerPlan("docker-repo", (DOCKER_REPO_COMPOSE,), compose_only=True)
    source = install_source(setting, distro, major)
    if source == "distro":
        return DockerPlan("distro", (DISTRO_COMPOSE[distro],), compose_only=True)
    return DockerPlan("docker-repo", (DOCKER_REPO_COMPOSE,), compose_only=True)


def docker_repo_source(distro: str, codename: str) -> str:
    return (
        "Types: deb\n"
        f"URIs: https://download.docker.com/linux/{distro.lower()}\n"
        f"Suites: {codename}\n"
        "Components: stable\n"
        f"Signed-By: {KEYRING}\n"
    )


def docker_repo_script(
    distro: str,
    codename: str,
    packages: tuple[str, ...],
    keyring: str = KEYRING,
    sources: str = SOURCES,
) -> str:
    """Docker's documented apt set-up (docs.docker.com/engine/install/debian, .../ubuntu), then ``packages``.

    A host that has Docker's repository already (any file, any keyring: a host running docker-ce usually
    does) keeps its source: a second one for the same repository with another ``Signed-By`` makes every
    apt command fail ("Conflicting values set for option Signed-By"). ``apt-get --print-uris update``
    tells, as apt reads the sources (both formats, comments, ``Enabled: no``), without fetching. A source
    pgmon adds and apt then fails with is removed again, so that apt works as before.

    ``keyring`` and ``sources`` are parameters for the unit tests only.
    """
    if not codename:
        raise DeployError(
            f"{distro}: no VERSION_CODENAME in /etc/os-release; Docker's repository is per release, "
            "so pgmon cannot add it; install Docker Engine and Compose v2 yourself"
        )
    keyring_dir = keyring.rsplit("/", 1)[0]
    # A line of --print-uris is a quoted URL: 'https://download.docker.com/linux/debian/dists/...'
    listed = shlex.quote("^'https?://" + re.escape(f"download.docker.com/linux/{distro.lower()}/"))
    taken_back = (
        f"pgmon removed {sources} again: apt-get update failed with Docker's repository added "
        "(see above); the host's apt is as it was"
    )
    return "\n".join(
        [
            "set -e",
            "export DEBIAN_FRONTEND=noninteractive",
            "uris=$(apt-get --print-uris update)",
            f"if printf '%s\\n' \"$uris\" | grep -Eq {listed}; then",
            '    echo "pgmon: Docker\'s apt repository is configured on this host already; using it"',
            "    apt-get update -q",
            "else",
            "    apt-get update -q",
            "    apt-get install -y -q ca-certificates curl",
            f"    install -m 0755 -d {shlex.quote(keyring_dir)}",
            f"    curl -fsSL https://download.docker.com/linux/{distro.lower()}/gpg -o {shlex.quote(keyring)}",
            f"    chmod a+r {shlex.quote(keyring)}",
            f"    printf '%s' {shlex.quote(docker_repo_source(distro, codename).replace(KEYRING, keyring))} > "
            f"{shlex.quote(sources)}",
            f"    apt-get update -q || {{ rm -f {shlex.quote(sources)}; echo {shlex.quote(taken_back)} >&2; exit 1; }}",
            "fi",
            f"apt-get install -y -q {' '.join(shlex.quote(p) for p in packages)}",
        ]
    )


@deploy("Install Docker Engine and Compose v2")
def install_docker(settings: HostConfig, state: HostState):
    """Install and start Docker unless a working engine with Compose v2 is already there."""
    if state.engine_version and state.compose_version:
        host.log(
            f"pgmon: Docker Engine {state.engine_version} with Compose {state.compose_version} is ready"
        )
        return
    distro = host.get_fact(LinuxDistribution)
    name, major = distro.get("name"), distro.get("major") or 0
    if name not in ("Debian", "Ubuntu"):
        raise DeployError(
            f"{host.name}: pgmon installs Docker on Debian and Ubuntu only, not {name}; install it yourself"
        )
    # Installing Docker is a change like any other: under the run's lock (tasks/host_lock.py).
    claim_before_changes(name="Claim the host for this run", claim=claim_host(settings, state))
    if not (state.docker_installed and state.compose_version):
        installed = frozenset(host.get_fact(DebPackages)) if state.docker_installed else frozenset()
        plan = plan_docker(
            settings.config.docker_install, name, major, state.docker_installed, installed
        )
        if plan.source == "distro":
            apt.packages(name=plan.operation_name, packages=list(plan.packages), update=True)
        else:
            codename = distro.get("release_meta", {}).get("VERSION_CODENAME", "")
            server.shell(
                name=plan.operation_name,
                commands=[docker_repo_script(name, codename, plan.packages)],
            )
    systemd.service(name="Enable and start Docker", service="docker", running=True, enabled=True)
