"""Step 1: Docker Engine and Compose v2 on the processing host (Debian or Ubuntu).

Nothing is done when an engine answers and ``docker compose`` exists. Otherwise
Docker's official apt repository is used by default; ``pgmon_docker_install =
"distro"`` takes the distribution's packages where they include Compose v2
(Debian 13+, Ubuntu 24.04+).
"""

from __future__ import annotations

import io

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, systemd

from .host_state import HostState
from .settings import DeployError, Settings

DOCKER_REPO_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]


def distro_packages(distro: str, major: int) -> list[str]:
    if distro == "Debian" and major >= 13:
        # docker.io only recommends its CLI there: a host with Recommends off would get an engine without it.
        return ["docker.io", "docker-cli", "docker-compose"]
    if distro == "Ubuntu" and major >= 24:
        return ["docker.io", "docker-compose-v2"]
    raise DeployError(
        f"pgmon_docker_install: {distro} {major} has no Compose v2 package; "
        "use pgmon_docker_install = 'docker-repo' (the default)"
    )


def docker_repo_source(distro: str, codename: str) -> str:
    return (
        "Types: deb\n"
        f"URIs: https://download.docker.com/linux/{distro.lower()}\n"
        f"Suites: {codename}\n"
        "Components: stable\n"
        "Signed-By: /etc/apt/keyrings/docker.asc\n"
    )


@deploy("Install Docker Engine and Compose v2")
def install_docker(settings: Settings, state: HostState):
    """Install and start Docker unless a working engine with Compose v2 is already there."""
    if state.engine_version and state.compose_version:
        host.log(f"pgmon: Docker Engine {state.engine_version} with Compose {state.compose_version} is ready")
        return
    distro = host.get_fact(LinuxDistribution)
    name, major = distro.get("name"), distro.get("major") or 0
    if name not in ("Debian", "Ubuntu"):
        raise DeployError(f"{host.name}: pgmon installs Docker on Debian and Ubuntu only, not {name}; install it yourself")
    if not (state.docker_installed and state.compose_version):
        if settings.config.docker_install == "distro":
            apt.packages(name="Install Docker from the distribution", packages=distro_packages(name, major), update=True)
        else:
            codename = distro.get("release_meta", {}).get("VERSION_CODENAME", "")
            apt.packages(name="Install apt prerequisites for Docker", packages=["ca-certificates", "curl"], update=True)
            files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="755")
            files.download(
                name="Add Docker's apt signing key",
                src=f"https://download.docker.com/linux/{name.lower()}/gpg",
                dest="/etc/apt/keyrings/docker.asc",
                mode="644",
            )
            files.put(
                name="Add Docker's apt repository",
                src=io.StringIO(docker_repo_source(name, codename)),
                dest="/etc/apt/sources.list.d/docker.sources",
                mode="644",
            )
            apt.packages(name="Install Docker Engine and Compose v2", packages=DOCKER_REPO_PACKAGES, update=True)
    systemd.service(name="Enable and start Docker", service="docker", running=True, enabled=True)
