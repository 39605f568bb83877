import pytest

from tasks.docker_engine import DOCKER_REPO_PACKAGES, distro_packages, docker_repo_source
from tasks.settings import DeployError


def test_distro_packages_include_compose_v2_where_the_distribution_has_it():
    assert distro_packages("Debian", 13) == ["docker.io", "docker-cli", "docker-compose"]
    assert distro_packages("Ubuntu", 24) == ["docker.io", "docker-compose-v2"]


@pytest.mark.parametrize("distro, major", [("Debian", 12), ("Ubuntu", 22)])
def test_distro_without_compose_v2_is_refused_with_the_fix(distro, major):
    with pytest.raises(DeployError, match="pgmon_docker_install = 'docker-repo'"):
        distro_packages(distro, major)


def test_docker_repo_source_is_signed_and_per_distribution():
    source = docker_repo_source("Ubuntu", "noble")
    assert "URIs: https://download.docker.com/linux/ubuntu\n" in source
    assert "Suites: noble\n" in source and "Signed-By: /etc/apt/keyrings/docker.asc\n" in source
    assert "docker-compose-plugin" in DOCKER_REPO_PACKAGES
