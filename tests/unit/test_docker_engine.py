"""Step 1's decisions and commands. The distribution path runs for real on a bare Debian 13 test host
(tests/e2e/test_bare_host.py); Docker's apt repository cannot be reached from the test machines, so its
script is run here against stand-ins of apt-get, curl, install and chmod that record what they were asked."""

import os
import stat
import subprocess

import pytest

from tasks.docker_engine import (
    DOCKER_REPO_PACKAGES,
    DockerPlan,
    distro_packages,
    docker_repo_script,
    docker_repo_source,
    plan_docker,
)
from tasks.settings import DeployError, build_settings

from .conftest import ENVIRON, group_data


def test_distro_packages_include_compose_v2_where_the_distribution_has_it():
    assert distro_packages("Debian", 13) == ["docker.io", "docker-cli", "docker-compose"]
    assert distro_packages("Ubuntu", 24) == ["docker.io", "docker-compose-v2"]


@pytest.mark.parametrize("distro, major", [("Debian", 12), ("Ubuntu", 22)])
def test_distro_without_compose_v2_is_refused_with_the_fix(distro, major):
    with pytest.raises(
        DeployError, match="pgmon_docker_install = 'auto' \\(the default\\) or 'docker-repo'"
    ):
        plan_docker("distro", distro, major, engine_installed=False)


def test_auto_is_the_default():
    assert build_settings(group_data(), ENVIRON).config.docker_install == "auto"


@pytest.mark.parametrize(
    "distro, major, source",
    [
        ("Debian", 13, "distro"),
        ("Debian", 14, "distro"),
        ("Ubuntu", 24, "distro"),
        ("Ubuntu", 26, "distro"),
        ("Debian", 12, "docker-repo"),
        ("Debian", 11, "docker-repo"),
        ("Ubuntu", 22, "docker-repo"),
    ],
)
def test_auto_takes_the_distribution_where_it_has_compose_v2_and_dockers_repository_elsewhere(
    distro, major, source
):
    plan = plan_docker("auto", distro, major, engine_installed=False)
    assert plan.source == source and not plan.compose_only
    assert plan.packages == (
        tuple(distro_packages(distro, major)) if source == "distro" else DOCKER_REPO_PACKAGES
    )


def test_forced_choices_are_kept():
    assert (
        plan_docker("docker-repo", "Debian", 13, engine_installed=False).packages
        == DOCKER_REPO_PACKAGES
    )
    assert plan_docker("distro", "Ubuntu", 24, engine_installed=False).source == "distro"


@pytest.mark.parametrize(
    "setting, distro, major, installed, expected",
    [
        # Docker's own engine without its Compose plugin: the plugin, whatever the setting (docker.io's would conflict).
        (
            "auto",
            "Debian",
            13,
            {"docker-ce", "docker-ce-cli"},
            DockerPlan("docker-repo", ("docker-compose-plugin",), True),
        ),
        (
            "distro",
            "Ubuntu",
            24,
            {"docker-ce-cli"},
            DockerPlan("docker-repo", ("docker-compose-plugin",), True),
        ),
        # The distribution's engine: its own Compose package where it has one...
        (
            "auto",
            "Debian",
            13,
            {"docker.io", "docker-cli"},
            DockerPlan("distro", ("docker-compose",), True),
        ),
        ("auto", "Ubuntu", 24, {"docker.io"}, DockerPlan("distro", ("docker-compose-v2",), True)),
        # ... and Docker's plugin (which works with any engine) where it has none.
        (
            "auto",
            "Debian",
            12,
            {"docker.io"},
            DockerPlan("docker-repo", ("docker-compose-plugin",), True),
        ),
        ("auto", "Ubuntu", 22, set(), DockerPlan("docker-repo", ("docker-compose-plugin",), True)),
    ],
)
def test_an_engine_without_compose_v2_gets_compose_only(
    setting, distro, major, installed, expected
):
    assert plan_docker(setting, distro, major, True, frozenset(installed)) == expected


def test_operation_names_say_what_and_from_where():
    assert (
        plan_docker("auto", "Debian", 13, False).operation_name
        == "Install Docker from the distribution"
    )
    assert (
        plan_docker("auto", "Debian", 12, False).operation_name
        == "Install Docker from Docker's apt repository"
    )
    assert (
        plan_docker("auto", "Debian", 13, True, frozenset({"docker.io"})).operation_name
        == "Install Compose v2 from the distribution"
    )


def test_docker_repo_source_is_signed_and_per_distribution():
    source = docker_repo_source("Ubuntu", "noble")
    assert "URIs: https://download.docker.com/linux/ubuntu\n" in source
    assert "Suites: noble\n" in source and "Signed-By: /etc/apt/keyrings/docker.asc\n" in source
    assert "docker-compose-plugin" in DOCKER_REPO_PACKAGES


def test_docker_repo_script_needs_a_codename():
    with pytest.raises(DeployError, match="VERSION_CODENAME"):
        docker_repo_script("Debian", "", DOCKER_REPO_PACKAGES)


STUB = """#!/bin/sh
printf '%s' "$(basename "$0")" >> "$LOG"; for a in "$@"; do printf ' %s' "$a" >> "$LOG"; done; echo >> "$LOG"
if [ "$(basename "$0")" = curl ]; then  # -fsSL URL -o FILE: the key Docker publishes
    while [ $# -gt 0 ]; do [ "$1" = -o ] && echo 'KEY' > "$2"; shift; done
fi
if [ "$(basename "$0")" = install ]; then mkdir -p "$4"; fi
if [ "$(basename "$0")" = chmod ]; then /bin/chmod "$@"; fi
"""


@pytest.mark.parametrize("distro, codename", [("Debian", "bookworm"), ("Ubuntu", "jammy")])
def test_docker_repo_script_follows_dockers_documented_steps(tmp_path, distro, codename):
    """The script run with stand-ins on PATH: the key is fetched before the source that names it is written, apt
    reads the source before installing, and every step stops the script if it fails (set -e)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "curl", "install", "chmod"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    keyring, sources = tmp_path / "keyrings" / "docker.asc", tmp_path / "docker.sources"
    script = docker_repo_script(distro, codename, DOCKER_REPO_PACKAGES, str(keyring), str(sources))
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    subprocess.run(["sh", "-c", script], env=env, check=True)
    lower = distro.lower()
    assert log.read_text().splitlines() == [
        "apt-get --print-uris update",  # lists no Docker repository: pgmon adds its own
        "apt-get update -q",
        "apt-get install -y -q ca-certificates curl",
        f"install -m 0755 -d {keyring.parent}",
        f"curl -fsSL https://download.docker.com/linux/{lower}/gpg -o {keyring}",
        f"chmod a+r {keyring}",
        "apt-get update -q",
        "apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin",
    ]
    assert sources.read_text() == docker_repo_source(distro, codename).replace(
        "/etc/apt/keyrings/docker.asc", str(keyring)
    )
    assert stat.S_IMODE(os.stat(keyring).st_mode) & 0o444 == 0o444
    # A failing download stops everything after it.
    (bin_dir / "curl").write_text("#!/bin/sh\nexit 22\n")
    log.unlink()
    sources.unlink()
    assert subprocess.run(["sh", "-c", script], env=env).returncode == 22
    assert not sources.exists() and "docker-ce" not in log.read_text()


# apt-get for the script: `--print-uris update` is the real apt reading a private apt state (APT_CONFIG), which
# parses every source and fetches nothing; `update` reads the sources the same way and fails where real apt would
# before any download, or like an unreachable repository once the file UPDATE_FAILS names exists; `install`
# only logs.
REAL_APT_STUB = """#!/bin/sh
printf '%s' "$(basename "$0")" >> "$LOG"; for a in "$@"; do printf ' %s' "$a" >> "$LOG"; done; echo >> "$LOG"
case "$*" in
    *--print-uris*) exec /usr/bin/apt-get "$@" ;;
    *update*) [ -e "${UPDATE_FAILS:-/nonexistent}" ] && exit 100
        exec /usr/bin/apt-get --print-uris update >/dev/null ;;
esac
"""
# Docker's instructions of 2020-2023: another keyring for the same repository.
OLD_DOCKER_LIST = (
    "deb [arch=amd64 signed-by=/usr/share/keyrings/docker-archive-keyring.gpg] "
    "https://download.docker.com/linux/debian bookworm stable\n"
)


@pytest.fixture
def private_apt(tmp_path):
    """An apt state of its own (sources, lists, status) and stand-ins on PATH; the script's environment."""
    if not os.path.exists("/usr/bin/apt-get"):
        pytest.skip("needs apt")
    etc = tmp_path / "etc"
    for folder in ("sources.list.d", "apt.conf.d", "preferences.d"):
        (etc / folder).mkdir(parents=True)
    (etc / "sources.list").write_text("")
    (tmp_path / "status").write_text("")
    (tmp_path / "apt.conf").write_text(
        f'Dir::Etc "{etc}/"; Dir::State "{tmp_path}/state/"; Dir::Cache "{tmp_path}/cache/";\n'
        f'Dir::State::status "{tmp_path}/status";\n'
        # Never fetched; a closed local port should anything try.
        'Acquire::http::Proxy "http://127.0.0.1:9"; Acquire::https::Proxy "http://127.0.0.1:9";\n'
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, text in (
        ("apt-get", REAL_APT_STUB),
        ("curl", STUB),
        ("install", STUB),
        ("chmod", STUB),
    ):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOG": str(tmp_path / "log"),
        "APT_CONFIG": str(tmp_path / "apt.conf"),
    }


def apt_reads_its_sources(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/usr/bin/apt-get", "--print-uris", "update"], env=env, capture_output=True, text=True
    )


def test_an_existing_docker_source_is_reused_and_apt_stays_readable(tmp_path, private_apt):
    """A host set up with Docker's older instructions (docker.list, another signed-by): a second source for
    the same repository would stop every apt command ("Conflicting values set for option Signed-By")."""
    sources_d = tmp_path / "etc" / "sources.list.d"
    (sources_d / "docker.list").write_text(OLD_DOCKER_LIST)
    keyring, sources = tmp_path / "keyrings" / "docker.asc", sources_d / "docker.sources"
    script = docker_repo_script(
        "Debian", "bookworm", ("docker-compose-plugin",), str(keyring), str(sources)
    )
    run = subprocess.run(["sh", "-c", script], env=private_apt, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Docker's apt repository is configured on this host already" in run.stdout
    assert not sources.exists() and not keyring.exists()
    log = (tmp_path / "log").read_text().splitlines()
    assert log[-1] == "apt-get install -y -q docker-compose-plugin" and "curl" not in str(log)
    read = apt_reads_its_sources(private_apt)
    assert read.returncode == 0 and "download.docker.com" in read.stdout, read.stderr


def test_a_source_apt_cannot_use_is_taken_back(tmp_path, private_apt):
    """When apt fails with pgmon's new source, the source goes: the host's apt works as before."""
    sources = tmp_path / "etc" / "sources.list.d" / "docker.sources"
    script = docker_repo_script(
        "Debian", "bookworm", DOCKER_REPO_PACKAGES, str(tmp_path / "docker.asc"), str(sources)
    )
    run = subprocess.run(
        ["sh", "-c", script],
        env={**private_apt, "UPDATE_FAILS": str(sources)},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert f"pgmon removed {sources} again" in run.stderr
    assert not sources.exists() and "docker-ce" not in (tmp_path / "log").read_text()
    assert apt_reads_its_sources(private_apt).returncode == 0
