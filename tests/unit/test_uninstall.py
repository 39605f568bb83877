"""Uninstall (and the deploy's container step) on a host where the Compose project's name is not pgmon's alone,
and Compose's fallback command pinned; the end-to-end proof is tests/e2e/test_bare_host.py ("Removing")."""

import subprocess

from tasks.stack_model import compose_command

from .conftest import needs_docker


@needs_docker
def test_the_fallback_compose_command_reads_no_file_from_the_ssh_users_folder(tmp_path):
    """Without pgmon's compose file, ``docker compose -p X down`` ran in the SSH user's folder: a compose.yaml
    there (or in a parent) or a .env naming COMPOSE_FILE decided what it acted on. Real Compose, asked for the
    services it would act on (``config`` needs no engine): none, from no file."""
    home = tmp_path / "home"
    (home / "user").mkdir(parents=True)
    (tmp_path / "elsewhere.yaml").write_text("services:\n  fromenv:\n    image: x\n")
    (home / "compose.yaml").write_text("services:\n  parent:\n    image: x\n")
    (home / "user/.env").write_text(f"COMPOSE_FILE={tmp_path / 'elsewhere.yaml'}\n")
    for cwd, env in (
        (home / "user", {}),
        (home, {"COMPOSE_FILE": str(tmp_path / "elsewhere.yaml")}),
    ):
        result = subprocess.run(
            ["sh", "-c", compose_command(None, "p", "config --services")],
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env},
            capture_output=True,
            text=True,
        )
        assert result.stdout == "" and "no configuration file provided" in result.stderr
