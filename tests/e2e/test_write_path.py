"""The file step's script on this machine's real Docker engine: a configuration the component's own checker
(promtool, amtool in the images the stack runs) refuses is never put in place, and the run says which and why."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.render import render_stack
from tasks.settings import build_settings
from tasks.stack_files import STAGE_PREFIX, apply_script, plan_files, tar_stream
from tests.unit.conftest import ENVIRON, FIXTURES, group_data

from .lab import TESTED_IMAGES

pytestmark = pytest.mark.e2e


def apply(stack, base_dir: Path, current: dict) -> subprocess.CompletedProcess:
    plan = plan_files(stack, current)
    return subprocess.run(
        ["bash", "-c", apply_script(plan, str(base_dir))],
        capture_output=True,
        text=True,
        input=base64.encodebytes(tar_stream(plan)).decode(),
        timeout=120,
        check=False,
    )


def with_content(stack, path: str, content: bytes):
    return replace(
        stack,
        files=tuple(replace(f, content=content) if f.path == path else f for f in stack.files),
    )


@pytest.fixture
def written(lab, tmp_path):
    """A base_dir holding a good stack, as a first run leaves it."""
    settings = build_settings(
        group_data(pgmon_images=TESTED_IMAGES), ENVIRON
    )  # the images built here
    stack = render_stack(settings, json.loads((FIXTURES / "dashboard-9628.json").read_text()))
    base_dir = tmp_path / "pgmon"
    result = apply(stack, base_dir, {})
    assert result.returncode == 0, result.stderr
    return stack, base_dir


@pytest.mark.parametrize(
    "path, content, checker, reason",
    [
        (
            "prometheus/rules/pgmon.rules.yml",
            b"groups:\n  - name: broken\n    rules:\n      - alert: X\n        expr: up ==\n",
            "promtool",
            "/etc/prometheus/rules/pgmon.rules.yml",
        ),
        (
            "alertmanager/alertmanager.yml",
            b"route:\n  receiver: nobody-by-that-name\nreceivers: []\n",
            "amtool",
            'undefined receiver "nobody-by-that-name"',
        ),
    ],
)
def test_a_refused_configuration_never_replaces_the_one_in_use(
    written, path, content, checker, reason
):
    stack, base_dir = written
    in_use = (base_dir / path).read_bytes()
    result = apply(
        with_content(stack, path, content), base_dir, {}
    )  # as if the host had nothing: all rewritten
    assert result.returncode != 0
    assert f"refuses the new {path.split('/')[0]} configuration ({checker};" in result.stderr
    assert reason in result.stderr
    assert (base_dir / path).read_bytes() == in_use
    assert (base_dir / "docker-compose.yml").exists() and not list(
        base_dir.glob(STAGE_PREFIX + "*")
    )


def test_an_accepted_configuration_is_put_in_place(written):
    stack, base_dir = written
    rules = b"groups:\n  - name: fine\n    rules:\n      - alert: X\n        expr: up == 0\n"
    result = apply(with_content(stack, "prometheus/rules/pgmon.rules.yml", rules), base_dir, {})
    assert result.returncode == 0, result.stderr
    assert (base_dir / "prometheus/rules/pgmon.rules.yml").read_bytes() == rules
