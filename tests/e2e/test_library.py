"""pgmon as a library in someone else's pyinfra project (docs/library.md).

The sdist is built from a copy of this checkout and the wheel from that sdist (``python -m build``, as a
release is built); the wheel goes alone into a fresh virtual environment (its dependencies from the
package index); a project folder of its own (inventory.py, group_data/all.py and a deploy.py of a few
lines importing pgmon) is deployed through the lab by that environment's python, run from that folder
with nothing of the checkout on the path. Its own ``SITE``, beside the other modules' deployments.
The tests in this module run in file order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .lab import REPO, Deployment, Site
from .test_deploy import assert_ok, changed_operations, verification_lines

pytestmark = pytest.mark.e2e

SITE = Site(
    base_dir="/opt/pgmon-lib",
    project="pgmon-lib",
    prometheus_port=21390,
    alertmanager_port=21393,
    grafana_port=21300,
)
NAMES = ["shop", "billing"]  # both on 5432, a cluster no other module stops
# The deploy file of the README section, as a user writes it.
DEPLOY_FILE = """from pgmon import deploy_pgmon

deploy_pgmon()
"""
NAMED_STEPS = [
    "Configure the pgmon stack | Write pgmon configuration",
    "Start the pgmon stack | Start pgmon containers",
]
NOT_COPIED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"
)


def run(*args, cwd: Path | None = None, timeout: float = 900, env: dict | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would put the checkout on another python's path."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it; the build never writes into the checkout."""
    work = tmp_path_factory.mktemp("lib-build")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_COPIED)
    run(sys.executable, "-m", "venv", work / "builder")
    run(work / "builder/bin/python", "-m", "pip", "install", "-q", "build", env=clean_environment())
    run(
        work / "builder/bin/python",
        "-m",
        "build",
        "--outdir",
        work / "dist",
        source,
        env=clean_environment(),
    )
    (wheel,) = (work / "dist").glob("pgmon-*.whl")
    (sdist,) = (work / "dist").glob("pgmon-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel and its dependencies, nothing of the checkout."""
    directory = tmp_path_factory.mktemp("lib-venv") / "venv"
    run(sys.executable, "-m", "venv", directory)
    run(
        directory / "bin/python",
        "-m",
        "pip",
        "install",
        "-q",
        dist["wheel"],
        env=clean_environment(),
    )
    return directory


@pytest.fixture(scope="module")
def project(new_deployment):
    """Another team's pyinfra project: the lab's inventory and settings, and the few-line deploy file."""
    with (
        new_deployment("lib-project", site=SITE) as deployment,
        pytest.MonkeyPatch.context() as environment,
    ):
        deployment.configure(NAMES)
        (deployment.project.directory / "deploy.py").write_text(DEPLOY_FILE)
        environment.delenv("PYTHONPATH", raising=False)
        environment.delenv("PYTHONHOME", raising=False)
        yield deployment


def deploy(project: Deployment, venv: Path, *args: str):
    return project.project.pyinfra(
        *args, deploy=str(project.project.directory / "deploy.py"), python=str(venv / "bin/python")
    )


def test_the_wheel_holds_pgmon_alone_with_everything_it_reads(dist):
    dist_info = "pgmon-{}.dist-info".format(dist["wheel"].name.split("-")[1])
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        top_level = wheel.read(f"{dist_info}/top_level.txt").decode().split()
    assert {name.split("/")[0] for name in names} == {"pgmon", dist_info}
    assert top_level == ["pgmon"]
    modules = {
        "pgmon/" + str(path.relative_to(REPO / "tasks")) for path in (REPO / "tasks").rglob("*.py")
    }
    templates = {
        "pgmon/_templates/" + str(path.relative_to(REPO / "templates"))
        for path in (REPO / "templates").rglob("*")
        if path.is_file()
    }
    dashboards = {
        "pgmon/_files/" + str(path.relative_to(REPO / "files"))
        for path in (REPO / "files").rglob("*.json")
    }
    assert templates and dashboards
    assert modules | templates | dashboards <= names, sorted(
        (modules | templates | dashboards) - names
    )
    assert not any("/tests/" in name or name.startswith("tasks/") for name in names)


def test_the_sdist_holds_what_the_wheel_is_built_from(dist):
    # `python -m build` built the wheel above from this sdist alone; check it carries the sources as such.
    listing = run("tar", "tzf", dist["sdist"])
    root = dist["sdist"].name.removesuffix(".tar.gz")
    for path in (
        "pyproject.toml",
        "README.md",
        "tasks/deploy.py",
        "tasks/render/__init__.py",
        "templates/prometheus/pgmon.rules.yml.j2",
        "files/grafana/dashboards/pgmon-fleet.json",
    ):
        assert f"{root}/{path}\n" in listing, path


def test_the_installed_package_reads_only_its_own_files(venv, tmp_path):
    script = (
        "import importlib.util, pathlib, pgmon, pgmon.stack_model as m\n"
        "package = pathlib.Path(pgmon.__file__).parent\n"
        "print(package)\n"
        "assert m.TEMPLATES_DIR == package / '_templates', m.TEMPLATES_DIR\n"
        "assert m.DASHBOARDS_DIR == package / '_files/grafana/dashboards', m.DASHBOARDS_DIR\n"
        "assert (m.TEMPLATES_DIR / 'prometheus/pgmon.rules.yml.j2').is_file()\n"
        "assert sorted(p.name for p in m.DASHBOARDS_DIR.glob('*.json'))\n"
        "assert importlib.util.find_spec('tasks') is None, 'a top-level tasks is importable'\n"
    )
    out = run(venv / "bin/python", "-c", script, cwd=tmp_path, env=clean_environment())
    assert out.strip().startswith(str(venv)), out


def test_dry_run_from_the_other_project_changes_nothing(project, venv):
    output = assert_ok(deploy(project, venv, "--dry", "--diff"))
    assert "pgmon: will start exporter-shop" in output
    assert "pgmon: will create exporters/billing/pgpass" in output
    assert not Path(SITE.base_dir).exists()
    assert project.containers() == {}


def test_deploy_from_the_other_project_verifies(project, venv):
    output = assert_ok(deploy(project, venv))
    for component in ("prometheus", "alertmanager", "grafana"):
        assert "ok" in output.split(f"pgmon: {component}")[1].split("\n")[0], output[-6000:]
    assert {name: line.split()[0] for name, line in verification_lines(output).items()} == {
        name: "ok" for name in NAMES
    }
    # The operations keep the names they have in pgmon's own deploy.
    assert set(NAMED_STEPS) <= set(changed_operations(output))
    assert {"exporter-shop", "exporter-billing", "prometheus", "alertmanager", "grafana"} <= set(
        project.containers()
    )


def test_rerun_from_the_other_project_changes_nothing(project, venv):
    before = project.host_fingerprint()
    output = assert_ok(deploy(project, venv))
    assert changed_operations(output) == []
    assert project.host_fingerprint() == before
    assert {name: line.split()[0] for name, line in verification_lines(output).items()} == {
        name: "ok" for name in NAMES
    }
